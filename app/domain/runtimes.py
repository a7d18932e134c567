"""Runtimes (the workers' hosts as the API knows them), join tokens, and who may use which runtime.

A runtime belongs to one workspace and acts only for it, except shared runtimes: the platform's
own fleet, registered under the `shared` workspace, which serve every workspace.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from app.domain.jobs import Job

SHARED_WORKSPACE = "shared"

RuntimeStatus = Literal["online", "draining", "offline"]


def serves_workspace(runtime_workspace_id: str, workspace_id: str) -> bool:
    """Whether a runtime of `runtime_workspace_id` may take, see and report on work of `workspace_id`."""
    return runtime_workspace_id in (workspace_id, SHARED_WORKSPACE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    runtime_id: str
    workspace_id: str  # SHARED_WORKSPACE for the platform's fleet
    name: str
    shared: bool = False
    capabilities: list[str] = field(default_factory=list)  # the job types it runs
    runtimes: dict[str, bool] = field(default_factory=dict)  # serving engines and languages it has
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    max_concurrent_jobs: int = 0
    active_jobs: int = 0  # slots taken, counted by the API in the jobs' transactions
    reported_active_jobs: int = 0  # as the worker last said
    free_disk_bytes: int = 0
    load: float | None = None
    software_version: str = ""
    queue_mode: str = "lease"
    jobs_queue_url: str = ""
    control_queue_url: str = ""
    control_url: str | None = None  # its direct control endpoint, if it serves one
    registered_at: str = ""
    last_heartbeat: float = 0
    last_heartbeat_at: str = ""
    status: RuntimeStatus = "online"
    minted_by_workspace: str = ""  # the workspace whose join token registered it
    # Its runtime key, sealed with the KMS key (app.services.keyring): what the API signs for it and
    # seals its jobs' secrets with. None for a runtime registered before runtime keys existed.
    sealed_key: str | None = None
    # SHA-256 of its runtime token: the credential its deletion removes (and, only for a runtime
    # without a runtime key, what the API's signatures for it are keyed with).
    token_digest: str = ""
    removed_at: str | None = None  # being deleted: nothing is placed on it any more

    @property
    def holds_key(self) -> bool:
        return bool(self.sealed_key)

    def effective_status(self, now: float, heartbeat_interval: float) -> RuntimeStatus:
        """Online only while heartbeats keep coming: silent for two intervals means offline (and a
        runtime being deleted is offline, whatever it says)."""
        if self.status == "offline" or self.removed_at or now - self.last_heartbeat > 2 * heartbeat_interval:
            return "offline"
        return self.status

    def has_room(self) -> bool:
        return self.active_jobs < self.max_concurrent_jobs

    def occupancy(self) -> float:
        return self.active_jobs / max(self.max_concurrent_jobs, 1)

    def runs(self, job: Job) -> bool:
        """Whether it may run jobs like `job`: of a workspace it serves, of a type it advertises,
        with the labels the job asks for, and (for a job with secrets) holding a runtime key to
        receive them with."""
        return (serves_workspace(self.workspace_id, job.workspace_id) and job.type.value in self.capabilities
                and all(self.labels.get(name) == value for name, value in (job.runtime_labels or {}).items())
                and (not job.secrets or self.holds_key))

    def can_serve(self, job: Job, now: float, heartbeat_interval: float) -> bool:
        """Whether to offer it `job` now: online, running such jobs, the one a job is pinned to (if
        it is), with a free slot."""
        return (self.effective_status(now, heartbeat_interval) == "online" and self.runs(job)
                and job.pinned_runtime_id in (None, self.runtime_id) and self.has_room())


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinToken:
    """A limited-use secret that registers runtimes (its secret is a credential, never stored here)."""

    token_id: str
    workspace_id: str
    name: str
    prefix: str
    uses: int
    uses_left: int
    shared: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str
    expires_at: str
    expires_epoch: int
    created_by: str = ""
    digest: str = ""  # of its secret: the credential a revocation deletes ("" for tokens minted before)

    @property
    def is_active(self) -> bool:
        return self.uses_left > 0
