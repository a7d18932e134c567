"""Model profiles, installations and provider credentials, in their workspace's partition.

An installation's progress is written as its job's events are stored (`record_progress`, a write
for the same transaction), only forwards (a batch retried or delivered late never moves it back)
and only while it still belongs to that job. The workspace's installations are read on every
`/openai/v1` request to route it, so that listing is cached briefly (`routable`); this process
forgets it whenever it changes one.
"""

from dataclasses import asdict

from app.contract.models import InstallationStatus, InstallMode
from app.domain.models import (
    EngineVerdict,
    ModelFacts,
    ModelInstallation,
    ModelProfile,
    ProgressUpdate,
    Provider,
    ProviderCredential,
    SourceType,
)
from app.errors import ConditionFailed
from app.store import keys
from app.store.cache import TtlCache
from app.store.records import attributes, record
from app.store.table import Condition, Table, Write


def _profile(item: dict) -> ModelProfile:
    facts = dict(item["facts"])
    engines = {name: EngineVerdict(**verdict) for name, verdict in (facts.pop("engines", None) or {}).items()}
    return ModelProfile(profile_id=item["profile_id"], workspace_id=item["workspace_id"],
                        facts=ModelFacts(**{**facts, "source_type": SourceType(facts["source_type"]),
                                            "engines": engines}),
                        metadata=item.get("metadata") or {}, created_at=item["created_at"],
                        created_by=item.get("created_by", ""))


def _installation(item: dict) -> ModelInstallation:
    return record(ModelInstallation, item, install_mode=InstallMode(item["install_mode"]),
                  status=InstallationStatus(item["status"]))


def _credential(item: dict) -> ProviderCredential:
    return record(ProviderCredential, item, provider=Provider(item["provider"]))


class Models:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._routable: TtlCache[list[ModelInstallation]] = TtlCache(cache_seconds)

    # --- profiles -------------------------------------------------------------------------------

    def add_profile(self, profile: ModelProfile) -> None:
        pk, sk = keys.model_profile(profile.workspace_id, profile.profile_id)
        facts = asdict(profile.facts)
        facts["source_type"] = profile.facts.source_type.value
        item = {"pk": pk, "sk": sk, "profile_id": profile.profile_id, "workspace_id": profile.workspace_id,
                "facts": {name: value for name, value in facts.items() if value is not None},
                "metadata": profile.metadata, "created_at": profile.created_at, "created_by": profile.created_by}
        self.table.put(item, must_not_exist=True)

    def profile(self, workspace_id: str, profile_id: str) -> ModelProfile | None:
        item = self.table.get(*keys.model_profile(workspace_id, profile_id))
        return _profile(item) if item else None

    def profiles(self, workspace_id: str) -> list[ModelProfile]:
        """Newest first (ids are time-ordered)."""
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.MODEL_PROFILE, newest_first=True)
        return [_profile(item) for item in page.items]

    # --- installations --------------------------------------------------------------------------

    def add_installation(self, installation: ModelInstallation) -> Write:
        pk, sk = keys.model_installation(installation.workspace_id, installation.installation_id)
        return Write.put({"pk": pk, "sk": sk, **attributes(installation)}, must_not_exist=True)

    def installation(self, workspace_id: str, installation_id: str) -> ModelInstallation | None:
        item = self.table.get(*keys.model_installation(workspace_id, installation_id))
        return _installation(item) if item else None

    def installations(self, workspace_id: str) -> list[ModelInstallation]:
        """Newest first."""
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.MODEL_INSTALLATION, newest_first=True)
        return [_installation(item) for item in page.items]

    def routable(self, workspace_id: str) -> list[ModelInstallation]:
        """The workspace's ready installations, possibly a few seconds old."""
        ready = self._routable.get(workspace_id)
        if ready is None:
            ready = [installation for installation in self.installations(workspace_id) if installation.routable]
            self._routable.put(workspace_id, ready)
        return ready

    def forget(self, workspace_id: str) -> None:
        """Drop the cached routing listing; call after any change to the workspace's installations."""
        self._routable.forget(workspace_id)

    def record_progress(self, workspace_id: str, job_id: str, update: ProgressUpdate, now: str) -> Write:
        """Copy a job's newest progress onto its installation: only if the installation is that job's,
        only forwards, and never out of `failed`."""
        return Write.update(*keys.model_installation(workspace_id, update.installation_id), set=update.changes(now),
                            condition=Condition(equals={"job_id": job_id}, below={"progress_seq": update.seq},
                                                not_equals={"status": InstallationStatus.failed.value}))

    def record_job_end(self, workspace_id: str, installation_id: str, job_id: str, failure: str, error: str,
                       now: str) -> bool:
        """An installation whose job ended (error, expiry, cancel) is failed, unless the worker already
        said why; False when it is gone, another job's, or failed already."""
        changes = {"status": InstallationStatus.failed.value, "failure": failure, "error": error, "updated_at": now}
        try:
            self.table.update(*keys.model_installation(workspace_id, installation_id), set=changes,
                              condition=Condition(equals={"job_id": job_id},
                                                  not_equals={"status": InstallationStatus.failed.value}))
        except ConditionFailed:
            return False
        finally:
            self.forget(workspace_id)
        return True

    def remove_installation(self, installation: ModelInstallation) -> bool:
        removed = self.table.delete(*keys.model_installation(installation.workspace_id, installation.installation_id))
        self.forget(installation.workspace_id)
        return removed

    # --- provider credentials -------------------------------------------------------------------

    def put_credential(self, credential: ProviderCredential) -> None:
        """Store (or replace) the workspace's credential for its provider."""
        pk, sk = keys.provider_credential(credential.workspace_id, credential.provider.value)
        self.table.put({"pk": pk, "sk": sk, **attributes(credential)})

    def credential(self, workspace_id: str, provider: Provider) -> ProviderCredential | None:
        item = self.table.get(*keys.provider_credential(workspace_id, provider.value))
        return _credential(item) if item else None

    def credentials(self, workspace_id: str) -> list[ProviderCredential]:
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.PROVIDER_CREDENTIAL)
        return [_credential(item) for item in page.items]

    def delete_credential(self, workspace_id: str, provider: Provider) -> bool:
        return self.table.delete(*keys.provider_credential(workspace_id, provider.value))
