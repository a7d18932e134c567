"""Models on runtimes: profiles (what a model is), installations (a profile put on a runtime, or an
external OpenAI-compatible server registered), provider credentials, and their rules.

A profile's facts come from resolving its source (the hub's metadata for a Hugging Face repo);
its status is its own verdict (`profile_only`, `gated`, `incompatible`) until an installation of it
moves further. An installation's status and progress are the worker's (`ModelProgress` on every
event of its job, app.contract.models), copied onto it as the events arrive; the job's end decides
the rest (a job that ends in error or expires leaves its installation `failed`).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from app.contract.messages import JobStatus, JobType
from app.contract.models import InstallationStatus, InstallMode, ModelProgress

MODEL_JOB_TYPES = frozenset({JobType.model_pull, JobType.model_preload, JobType.model_attach})
EXTERNAL_RUNTIME = "external"  # the runtime id of an external_endpoint installation: the API serves it itself


class SourceType(str, Enum):
    huggingface = "huggingface"
    local_path = "local_path"  # a directory on a runtime host (installed with mount_volume)
    s3 = "s3"  # s3://bucket/prefix (resolved by the API; a runtime mounts it to serve it)
    openai_compatible = "openai_compatible"  # an existing OpenAI-compatible server (external_endpoint)


class Provider(str, Enum):
    """Whose credentials a workspace may store (BYO tokens)."""

    huggingface = "huggingface"


ProfileStatus = Literal["profile_only", "queued", "downloading", "installed", "attached", "ready", "failed", "gated",
                        "incompatible"]
# How far an installation's status takes its profile, and which wins when there are several.
_PROFILE_STATUS_OF: dict[InstallationStatus, ProfileStatus] = {
    InstallationStatus.queued: "queued",
    InstallationStatus.checking: "downloading",
    InstallationStatus.downloading: "downloading",
    InstallationStatus.verifying: "downloading",
    InstallationStatus.attached: "attached",
    InstallationStatus.ready: "ready",
    InstallationStatus.failed: "failed",
}
_PROFILE_RANK: tuple[ProfileStatus, ...] = ("failed", "gated", "queued", "downloading", "installed", "attached",
                                            "ready")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineVerdict:
    """Whether a serving engine can serve a model; `servable` None: only the runtime can tell."""

    servable: bool | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFacts:
    """What resolving a source found out: the profile preview before it is stored."""

    source_type: SourceType
    source_uri: str
    external_id: str  # the repo id, the path, the S3 URI or the external model's name
    display_name: str
    provider: str = ""
    revision: str | None = None  # as asked (branch, tag or commit)
    commit: str | None = None  # the revision pinned
    task: str | None = None
    library: str | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    architecture: str | None = None
    model_type: str | None = None
    parameter_count: int | None = None
    weight_bytes: int | None = None  # of the weight files an engine loads
    gated: bool = False
    private: bool = False
    # Whether the workspace can download it: "open", "granted" (its credential may), "needs_credential",
    # "denied" (its credential may not), or "unknown" (nothing to download from the API's side).
    access: str = "open"
    engines: dict[str, EngineVerdict] = field(default_factory=dict)

    @property
    def own_status(self) -> ProfileStatus:
        """The profile's status before any installation: gated without access, incompatible with every
        engine, else profile_only."""
        if self.access in ("needs_credential", "denied"):
            return "gated"
        if self.engines and all(verdict.servable is False for verdict in self.engines.values()):
            return "incompatible"
        return "profile_only"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelProfile:
    profile_id: str
    workspace_id: str
    facts: ModelFacts
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str
    created_by: str = ""

    def status(self, installations: Iterable["ModelInstallation"]) -> ProfileStatus:
        """The furthest any installation of it has come; its own verdict while none has."""
        reached = [installation.profile_status for installation in installations
                   if installation.profile_id == self.profile_id]
        if not reached:
            return self.facts.own_status
        return max(reached, key=_PROFILE_RANK.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInstallation:
    installation_id: str
    workspace_id: str
    profile_id: str
    runtime_id: str  # EXTERNAL_RUNTIME for an external endpoint
    install_mode: InstallMode
    serving_engine: str  # "vllm", or "external"
    model_name: str  # what OpenAI clients send as `model`
    status: InstallationStatus
    progress: int = 0
    progress_seq: int = 0  # the sequence number of the event it was last copied from
    job_id: str | None = None
    provider: str = ""
    source: str = ""  # the repo id (or path) installed
    commit: str | None = None
    local_path: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    cached: bool | None = None
    restarts: int = 0
    failure: str | None = None  # a FailureCode, or the job's ending
    error: str | None = None
    endpoint_url: str | None = None  # external_endpoint: the server's base URL
    sealed_key: str | None = None  # external_endpoint: its API key, sealed (app.services.secrets)
    created_at: str
    updated_at: str = ""
    ready_at: str | None = None

    @property
    def is_external(self) -> bool:
        return self.install_mode is InstallMode.external_endpoint

    @property
    def routable(self) -> bool:
        return self.status is InstallationStatus.ready

    @property
    def profile_status(self) -> ProfileStatus:
        if self.status is InstallationStatus.failed and self.failure == "gated":
            return "gated"
        if self.status is InstallationStatus.failed and self.local_path and self.failure == "engine_failed":
            return "installed"  # the snapshot is on the runtime; only serving failed
        return _PROFILE_STATUS_OF[self.status]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressUpdate:
    """What a batch of a model job's events changes on its installation: the newest progress."""

    installation_id: str
    seq: int
    progress: ModelProgress
    message: str

    def changes(self, now: str) -> dict[str, Any]:
        """The installation's attributes to set (the sticky facts the worker repeats on every event)."""
        progress = self.progress
        changes: dict[str, Any] = {"status": progress.installation_status.value, "progress_seq": self.seq,
                                   "restarts": progress.restarts, "updated_at": now}
        if progress.installation_status is not InstallationStatus.failed:
            changes["progress"] = progress.progress
        else:
            changes.update(failure=(progress.failure.value if progress.failure else "failed"), error=self.message)
        if progress.installation_status is InstallationStatus.ready:
            changes["ready_at"] = now
        for name in ("commit", "local_path", "bytes_done", "bytes_total", "cached"):
            value = getattr(progress, name)
            if value is not None:
                changes[name] = value
        return changes


def progress_update(events: Iterable[tuple[int, str, dict[str, Any]]]) -> ProgressUpdate | None:
    """The newest model progress among `(seq, message, data)` events that name an installation;
    None when none does (a job without an installation, or events without progress)."""
    newest: ProgressUpdate | None = None
    for seq, message, data in events:
        if "installation_status" not in data or not data.get("installation_id"):
            continue
        try:
            progress = ModelProgress.of_event(data)
        except ValueError:
            continue  # a worker's malformed progress changes nothing
        if progress is not None and progress.installation_id and (newest is None or seq > newest.seq):
            newest = ProgressUpdate(installation_id=progress.installation_id, seq=seq, progress=progress,
                                    message=message)
    return newest


def ending_of(job_status: JobStatus, error: str | None, job_type: JobType) -> tuple[str, str] | None:
    """(failure, error) an installation records when its job ends this way; None when the job's end
    leaves it as the worker last reported (a pull that completed)."""
    if job_status is JobStatus.complete:
        return None
    if job_status is JobStatus.expired:
        what = "the engine stopped" if job_type is JobType.model_attach else "it stopped"
        return "expired", f"its job passed its TTL and {what}"
    if job_status is JobStatus.cancelled:
        return "cancelled", "its job was cancelled"
    return "job_error", error or "its job failed"


def served_name(facts: ModelFacts) -> str:
    """The name OpenAI clients use for a model by default: its repo id (or the external server's name
    for it); for files in a directory or bucket, the name of their folder."""
    if facts.source_type in (SourceType.huggingface, SourceType.openai_compatible):
        return facts.external_id.strip()
    return re.sub(r"[^A-Za-z0-9._:/\-]", "-", facts.display_name).lstrip("._:/-") or "model"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderCredential:
    """A workspace's BYO token for a provider, sealed at rest; only its hint is ever shown."""

    workspace_id: str
    provider: Provider
    sealed: str
    hint: str
    name: str = ""
    created_at: str
    created_by: str = ""


def token_hint(token: str) -> str:
    """What may be shown of a token: its kind prefix and last four characters (`hf_...abcd`); less of
    a short one, so a hint never gives away much of any token."""
    token = token.strip()
    prefix = token[: token.index("_") + 1] if "_" in token[:5] else ""
    tail = 4 if len(token) >= 16 else 2
    return f"{prefix}...{token[-tail:]}"
