"""Runtimes (the workers' hosts as the API knows them), join tokens, and who may use which runtime.

A runtime belongs to one workspace and acts only for it, except shared runtimes: the platform's
own fleet, registered under the `shared` workspace, which serve every workspace.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from app.contract.policy import SANDBOX_DRIVER_LABEL, SANDBOX_NETWORK_LABEL, placement_refusal
from app.domain.jobs import Job
from app.domain.sandboxes import tool_paths, uncovered_paths

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
    package_cache: dict[str, Any] | None = None  # PackageCacheUsage, as its last heartbeat reported it
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
    # What it offers beyond job types (app.contract.messages.RuntimeOffers, as its last heartbeat or
    # its registration said): tool directories and sandbox isolation. None: it said nothing, so it
    # offers nothing (no tool directory, no isolation).
    offers: dict[str, Any] | None = None
    # Jobs running here (by the API's records) whose claims its last heartbeat did not report:
    # `<workspace id>/<job id>` → claim id. Missing from the next heartbeat too, they are lost.
    unreported: dict[str, str] = field(default_factory=dict)

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

    def takes_type(self, capability: str, workspace_id: str) -> bool:
        """Whether it runs jobs of this type for this workspace at all (whatever else a job needs)."""
        return serves_workspace(self.workspace_id, workspace_id) and capability in self.capabilities

    def runs(self, job: Job) -> bool:
        """Whether it may run jobs like `job`: of a workspace it serves, of a type it advertises,
        with the labels the job asks for, and (for a job with secrets) holding a runtime key to
        receive them with."""
        return (self.takes_type(job.type.value, job.workspace_id)
                and all(self.labels.get(name) == value for name, value in (job.runtime_labels or {}).items())
                and (not job.secrets or self.holds_key))

    @property
    def isolation(self) -> str:
        """How it confines sandboxes: `bubblewrap`, `rlimits` (limits only) or `none` (it runs none)."""
        return str((self.offers or {}).get("isolation", "none"))

    @property
    def sandbox_network(self) -> str:
        """`pasta` where a networked sandbox gets a network namespace of its own, else `none`."""
        return self.labels.get(SANDBOX_NETWORK_LABEL, "none")

    @property
    def tool_dirs(self) -> list[str]:
        return list((self.offers or {}).get("tool_dirs", []))

    @property
    def isolation_warning(self) -> str | None:
        """What a user should know about its sandboxes' confinement, if anything."""
        if self.isolation == "rlimits":
            return (f"runtime {self.name} ({self.runtime_id}) runs sandboxes without isolation (limits only, with "
                    "the worker's rights and network): only its own workspace's, as its owner allowed")
        return None

    def refusal(self, job: Job, *, sandbox_network: bool) -> str | None:
        """Why it cannot run `job` although it runs such jobs, or None. A sandbox needs isolation
        this runtime may give its workspace (app.contract.policy.placement_refusal; `sandbox_network`:
        the policy gives sandboxes network access) and a tool directory for every host path its
        server needs."""
        if not job.is_sandbox:
            return None
        labels = {**self.labels, SANDBOX_DRIVER_LABEL: self.isolation}
        refused = placement_refusal(labels, own_runtime=self.workspace_id == job.workspace_id, network=sandbox_network)
        if refused is not None:
            return refused
        missing = uncovered_paths(tool_paths(job.payload), self.tool_dirs)
        return f"the runtime offers no tool directory holding {missing[0]}" if missing else None

    def can_serve(self, job: Job, now: float, heartbeat_interval: float, *, sandbox_network: bool) -> bool:
        """Whether to offer it `job` now: online, running such jobs (where it can, see `refusal`), the
        one a job is pinned to (if it is), with a free slot."""
        return (self.effective_status(now, heartbeat_interval) == "online" and self.runs(job)
                and job.pinned_runtime_id in (None, self.runtime_id) and self.has_room()
                and self.refusal(job, sandbox_network=sandbox_network) is None)


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


# --- why a job waits -------------------------------------------------------------------------------

WaitReason = Literal["no_runtime_registered", "no_matching_runtime", "no_runtime_online", "no_free_slot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingFor:
    """What a queued job waits for before a runtime can take it, in the runtimes' terms."""

    capability: str  # the job type a runtime must offer
    reason: WaitReason

    @property
    def message(self) -> str:
        if self.reason == "no_runtime_registered":
            return (f"no registered runtime offers {self.capability}: register a worker that runs it "
                    "(POST /v1/cloud/join-tokens, then `berth worker`)")
        if self.reason == "no_matching_runtime":
            return (f"the registered runtimes that offer {self.capability} lack what the job needs (the runtime "
                    "labels it asks for, or a runtime key to receive its secrets); the job waits until one has it")
        if self.reason == "no_runtime_online":
            return f"no online runtime offers {self.capability}; the job waits until one comes online"
        return f"every online runtime that offers {self.capability} is busy; the job waits for a free slot"


def why_waiting(job: Job, pool: list[Runtime], now: float, heartbeat_interval: float) -> WaitingFor:
    """Why no runtime of `pool` (the workspace's and the shared fleet's) takes `job` now."""
    offered = [runtime for runtime in pool if runtime.takes_type(job.type.value, job.workspace_id)]
    offering = [runtime for runtime in offered if runtime.runs(job)]
    online = [r for r in offering if r.effective_status(now, heartbeat_interval) == "online"]
    reason: WaitReason = ("no_runtime_registered" if not offered else "no_matching_runtime" if not offering else
                          "no_runtime_online" if not online else "no_free_slot")
    return WaitingFor(capability=job.type.value, reason=reason)
