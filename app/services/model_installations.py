"""Installations: a profile attached to a runtime (a `model.attach` job that pulls, verifies and
serves it) or an external OpenAI-compatible server registered (no job: the API calls it itself).

Attaching checks first, and says why when it cannot: the runtime must be the workspace's (or the
shared fleet's), run model jobs and be able to start the engine; the model must be one the engine
serves, reachable with the workspace's credential, and fit the runtime's disk and GPUs. The job is
pinned to that runtime and lives as long as the installation: deleting the installation cancels
it (the worker stops the engine), then frees the revision from the runtime's cache unless another
installation there still uses it.
"""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import JobStatus, JobType
from app.contract.models import EngineSpec, InstallationStatus, InstallMode, ModelServePayload, ServingEngine
from app.domain.jobs import Job
from app.domain.models import (
    EXTERNAL_RUNTIME,
    ModelInstallation,
    ModelProfile,
    Provider,
    SourceType,
    served_name,
)
from app.domain.runtimes import Runtime
from app.errors import BerthError, Conflict, NotFound, Unprocessable
from app.ids import new_id
from app.services.activity import ActivityLog
from app.services.control import ControlChannel
from app.services.external_endpoints import ExternalEndpoints
from app.services.jobs import JobService
from app.services.keyring import RuntimeKeyring
from app.services.model_hub import ModelHub
from app.services.providers import ProviderCredentials
from app.services.runtimes import RuntimeService
from app.settings import Settings
from app.store import Store

EVICT_TIMEOUT_SECONDS = 10.0
_MODE_FOR_SOURCE = {SourceType.huggingface: InstallMode.pull_from_source,
                    SourceType.local_path: InstallMode.mount_volume,
                    SourceType.openai_compatible: InstallMode.external_endpoint}


@dataclass(frozen=True)
class AttachRequest:
    runtime_id: str
    install_mode: InstallMode | None = None  # None: the one the profile's source calls for
    serving_engine: str = "vLLM"
    engine: dict[str, Any] | None = None  # EngineSpec settings (tensor_parallel_size, max_model_len, ...)
    served_model_name: str | None = None
    api_key: str | None = None  # an external endpoint's


@dataclass(frozen=True)
class Removal:
    installation: ModelInstallation
    job_status: JobStatus | None
    evicted: bool
    freed_bytes: int
    reason: str


class ModelInstallations:
    def __init__(self, store: Store, settings: Settings, jobs: JobService, runtimes: RuntimeService,
                 control: ControlChannel, providers: ProviderCredentials, endpoints: ExternalEndpoints,
                 hub: ModelHub, activity: ActivityLog, clock: Clock):
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self.hub = hub
        self.runtimes = runtimes
        self.control = control
        self.providers = providers
        self.endpoints = endpoints
        self.activity = activity
        self.clock = clock

    # --- reads -----------------------------------------------------------------------------------

    def get(self, principal: Principal, installation_id: str) -> ModelInstallation:
        installation = self.store.models.installation(principal.workspace_id, installation_id)
        if installation is None:
            raise NotFound(f"no model installation {installation_id}")
        return installation

    def list(self, principal: Principal, *, profile_id: str | None = None,
             runtime_id: str | None = None) -> list[ModelInstallation]:
        return [installation for installation in self.store.models.installations(principal.workspace_id)
                if profile_id in (None, installation.profile_id) and runtime_id in (None, installation.runtime_id)]

    # --- attach ----------------------------------------------------------------------------------

    def attach(self, principal: Principal, profile: ModelProfile, request: AttachRequest) -> ModelInstallation:
        mode = request.install_mode or _MODE_FOR_SOURCE.get(profile.facts.source_type)
        if mode is None or _MODE_FOR_SOURCE.get(profile.facts.source_type) is not mode:
            raise _wrong_mode(profile, mode)
        name = request.served_model_name or served_name(profile.facts)
        if mode is InstallMode.external_endpoint:
            return self._register_endpoint(principal, profile, request, name)
        try:
            engine = ServingEngine.parse(request.serving_engine)
        except ValueError:
            raise Unprocessable(f"servingEngine {request.serving_engine!r} is not one berth starts (vLLM)") from None
        try:
            spec = EngineSpec.model_validate({**(request.engine or {}), "engine": engine, "served_model_name": name})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in error.errors(include_input=False, include_url=False))
            raise Unprocessable(f"invalid engine settings: {problems}") from None
        runtime = self._runtime(principal, request.runtime_id)
        self._check_serves(principal, profile, runtime, engine, spec)
        secrets = self._credential_for(principal, profile)
        if secrets:
            RuntimeKeyring.require_key(runtime)  # the token reaches a runtime only sealed for it
        installation_id = new_id("minst")
        payload = ModelServePayload(install_mode=mode, model=profile.facts.external_id if mode is
                                    InstallMode.pull_from_source else None,
                                    revision=profile.facts.commit or profile.facts.revision or "main",
                                    local_path=profile.facts.external_id if mode is InstallMode.mount_volume else None,
                                    installation_id=installation_id, engine=spec)
        now = self.clock.iso()

        def installation_of(job: Job) -> ModelInstallation:
            return ModelInstallation(
                installation_id=installation_id, workspace_id=principal.workspace_id, profile_id=profile.profile_id,
                runtime_id=runtime.runtime_id, install_mode=mode, serving_engine=engine.value, model_name=name,
                status=InstallationStatus.queued, job_id=job.job_id, provider=profile.facts.provider,
                source=profile.facts.external_id, commit=profile.facts.commit, created_at=now, updated_at=now)

        job = self.jobs.submit(principal, JobType.model_attach, payload.message_payload(),
                               ttl_seconds=self.settings.model_attach_ttl_seconds,
                               pinned_runtime_id=runtime.runtime_id, secrets=secrets,
                               with_writes=lambda job: [
                                   self.store.models.add_installation(installation_of(job)),
                                   self.activity.audit_write(principal.workspace_id, "model.attach",
                                                             actor=principal.subject_id, target=installation_id,
                                                             detail={"profile": profile.profile_id,
                                                                     "runtime": runtime.runtime_id})])
        self.store.models.forget(principal.workspace_id)
        return installation_of(job)

    def create_pull(self, principal: Principal, job_type: JobType, payload: dict[str, Any],
                    ttl_seconds: int | None, *, wait: bool = False) -> Job:
        """A `model.pull` or `model.preload` through `/v1/jobs`: the workspace's Hugging Face token
        goes with it (sealed for its runtime) when the repo needs one, never otherwise."""
        secrets = None
        model = payload.get("model") if isinstance(payload, dict) else None
        token = self.providers.token(principal.workspace_id, Provider.huggingface) if isinstance(model, str) else None
        if token and self.hub.needs_credential(str(model), payload.get("revision")):
            secrets = {"hf_token": token}
        return self.jobs.create(principal, job_type, payload, ttl_seconds, wait=wait, secrets=secrets)

    def _runtime(self, principal: Principal, runtime_id: str) -> Runtime:
        found = next((runtime for runtime in self.runtimes.visible(principal.workspace_id)
                      if runtime.runtime_id == runtime_id), None)
        if found is None:
            raise NotFound(f"no runtime {runtime_id} (runtimeId names one of GET /v1/cloud/runtimes)")
        return found

    def _check_serves(self, principal: Principal, profile: ModelProfile, runtime: Runtime, engine: ServingEngine,
                      spec: EngineSpec) -> None:
        """Conflict saying why this runtime cannot serve this model, if it cannot."""
        facts, where = profile.facts, f"runtime {runtime.runtime_id} ({runtime.name})"
        verdict = facts.engines.get(engine.value)
        if verdict is not None and verdict.servable is False:
            raise Conflict(f"{engine.value} cannot serve {facts.external_id}: {verdict.reason}")
        if facts.source_type is SourceType.huggingface and (facts.gated or facts.private) and \
                self.store.models.credential(principal.workspace_id, Provider.huggingface) is None:
            kind = "gated" if facts.gated else "private"
            raise Conflict(f"{facts.external_id} is {kind}: store a Hugging Face credential with access to it first"
                           " (POST /v1/cloud/providers)")
        if JobType.model_attach.value not in runtime.capabilities:
            raise Conflict(f"{where} does not run model jobs (its worker has no model executors)")
        if not runtime.runtimes.get(engine.value):
            raise Conflict(f"{where} cannot start {engine.value}: its worker found no {engine.value} command"
                           " (install it, or set BERTH_WORKER_VLLM_COMMAND)")
        gpus = len(runtime.gpus)
        if gpus and (spec.tensor_parallel_size or 1) > gpus:
            raise Conflict(f"{where} has {gpus} GPU(s); tensor parallel size {spec.tensor_parallel_size} needs more")
        needed = facts.weight_bytes or 0
        if runtime.free_disk_bytes and needed > runtime.free_disk_bytes and not self._cached_on(principal, runtime,
                                                                                                  profile):
            raise Conflict(f"{where} has {_size(runtime.free_disk_bytes)} of disk free; the weights of"
                           f" {facts.external_id} need {_size(needed)}")

    def _cached_on(self, principal: Principal, runtime: Runtime, profile: ModelProfile) -> bool:
        """Whether this workspace already put this revision on the runtime (its files need no new disk)."""
        return any(other.runtime_id == runtime.runtime_id and other.source == profile.facts.external_id
                   and other.commit == profile.facts.commit and other.local_path
                   for other in self.store.models.installations(principal.workspace_id))

    def _credential_for(self, principal: Principal, profile: ModelProfile) -> dict[str, Any] | None:
        """The job's secrets: the workspace's Hugging Face token, only for a repo that needs one."""
        facts = profile.facts
        if facts.source_type is not SourceType.huggingface or not (facts.gated or facts.private):
            return None
        token = self.providers.token(principal.workspace_id, Provider.huggingface)
        return {"hf_token": token} if token else None

    def _register_endpoint(self, principal: Principal, profile: ModelProfile, request: AttachRequest,
                           name: str) -> ModelInstallation:
        if request.runtime_id != EXTERNAL_RUNTIME:
            raise Unprocessable(f"an external_endpoint install is served by the API itself: runtimeId is"
                                f" {EXTERNAL_RUNTIME!r}")
        base_url = self.endpoints.check_url(profile.facts.source_uri)
        served = self.endpoints.served_models(base_url, request.api_key)
        if profile.facts.external_id not in served:
            raise Conflict(f"{base_url} does not serve {profile.facts.external_id!r}; it serves"
                           f" {', '.join(served) or 'nothing'}")
        now = self.clock.iso()
        installation = ModelInstallation(
            installation_id=new_id("minst"), workspace_id=principal.workspace_id, profile_id=profile.profile_id,
            runtime_id=EXTERNAL_RUNTIME, install_mode=InstallMode.external_endpoint, serving_engine="external",
            model_name=name, status=InstallationStatus.ready, progress=100, provider=profile.facts.provider,
            source=profile.facts.external_id, endpoint_url=base_url,
            sealed_key=self.providers.seal(principal.workspace_id, request.api_key) if request.api_key else None,
            created_at=now, updated_at=now, ready_at=now)
        self.store.table.transact([self.store.models.add_installation(installation)])
        self.store.models.forget(principal.workspace_id)
        self.activity.audit(principal.workspace_id, "model.attach", actor=principal.subject_id,
                            target=installation.installation_id, detail={"profile": profile.profile_id,
                                                                         "endpoint": base_url})
        return installation

    # --- delete ----------------------------------------------------------------------------------

    def delete(self, principal: Principal, installation_id: str) -> Removal:
        """Stop it (cancel its job: the worker stops the engine), forget it, and free its revision from
        the runtime's cache unless another installation there uses it."""
        installation = self.get(principal, installation_id)
        job_status = None
        if installation.job_id:
            job_status = self.jobs.cancel(principal, installation.job_id)
        self.store.models.remove_installation(installation)
        self.activity.audit(principal.workspace_id, "model.delete", actor=principal.subject_id,
                            target=installation_id)
        evicted, freed, reason = self._evict(principal, installation, job_status)
        return Removal(installation, job_status, evicted, freed, reason)

    def _evict(self, principal: Principal, installation: ModelInstallation,
               job_status: JobStatus | None) -> tuple[bool, int, str]:
        if installation.is_external or not installation.job_id:
            return False, 0, "nothing is cached for an external endpoint"
        if installation.install_mode is not InstallMode.pull_from_source or not installation.commit:
            return False, 0, "a mounted directory is the owner's, never deleted by berth"
        users = [other.installation_id for other in self.store.models.installations(principal.workspace_id)
                 if other.runtime_id == installation.runtime_id and other.source == installation.source
                 and other.commit == installation.commit]
        if users:
            return False, 0, f"installation {users[0]} on the same runtime uses this revision"
        job = self.store.jobs.get(principal.workspace_id, installation.job_id)
        if job is None or job.runtime_id is None:
            return False, 0, "the job never reached a runtime: nothing was cached"
        if job_status is not None and job_status not in (JobStatus.cancelled, JobStatus.error, JobStatus.expired):
            return False, 0, "the engine is still stopping; the cache is kept"
        try:
            target = {"model": installation.source, "commit": installation.commit}
            result = self.control.call(job, "model.evict", target, timeout=EVICT_TIMEOUT_SECONDS)
        except BerthError as error:
            return False, 0, f"the runtime could not be asked to free the cache: {error.message}"
        return bool(result.get("evicted")), int(result.get("freed_bytes") or 0), str(result.get("reason") or "")


def _wrong_mode(profile: ModelProfile, mode: InstallMode | None) -> Conflict:
    source = profile.facts.source_type
    fitting = _MODE_FOR_SOURCE.get(source)
    if fitting is None:
        return Conflict(f"a {source.value} profile cannot be installed by a runtime yet: mount the files on the"
                        " runtime host and attach a local_path profile (mount_volume)")
    return Conflict(f"a {source.value} profile is installed with {fitting.value}, not {mode.value if mode else ''}")


def _size(count: int) -> str:
    amount = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{count} B"
