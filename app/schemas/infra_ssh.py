"""Bodies and views of the infra SSH routes (`/api/infra/ssh/*`) and the payloads of their jobs as
the API stores them."""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.clock import iso
from app.contract.messages import JobStatus, JobType
from app.contract.ssh.actions import SshAction
from app.contract.ssh.hosts import SshHost
from app.contract.ssh.jobs import SshForwardPayload, SshOutcome, SshRunPayload
from app.domain.infra_ssh import LABEL_LEASE, LABEL_USER, LABEL_VIA, LeaseState, SshLease
from app.domain.jobs import Job, JobEvent
from app.domain.ssh_attempts import AttemptOutcome, shown_parameters
from app.schemas.jobs import job_events_url
from app.schemas.limits import policy_limit

MAX_WAIT_SECONDS = 25.0  # under API Gateway's 29 s


# --- job payloads as the API stores them ----------------------------------------------------------


class _SecretFields(BaseModel):
    """The job's secrets, beside its payload until the job is stored: kept sealed, never in the
    payload, and sealed again for the runtime that takes the job (app.contract.ssh.jobs.SshSecrets)."""

    client_private_key: str = Field(min_length=64, max_length=16384)
    secret_parameters: dict[str, Any] = Field(default_factory=dict)
    secret_fields: ClassVar[tuple[str, ...]] = ("client_private_key", "secret_parameters")


class SshRunJobPayload(SshRunPayload, _SecretFields):
    pass


class SshForwardJobPayload(SshForwardPayload, _SecretFields):
    pass


SSH_PAYLOAD_MODELS: dict[JobType, type[BaseModel]] = {JobType.ssh_run: SshRunJobPayload,
                                                      JobType.ssh_forward: SshForwardJobPayload}


# --- requests -----------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeaseRequest(_Body):
    reason: str = Field(min_length=1, max_length=1000, description="why: kept in the audit record")
    ttl_seconds: int = Field(ge=10, le=86400, description="how long the lease is active once approved (at most "
                                                          "BERTH_SSH_LEASE_MAX_SECONDS)",
                             json_schema_extra=policy_limit("ssh_lease_max_seconds"))


class LeaseApproval(_Body):
    lease_id: str = Field(min_length=1, max_length=100, description="the pending lease you approve, as you saw it")


# Names are checked against the inventory by the service, not a pattern here, so that any
# well-formed attempt is answered (and audited) with its kind.
InventoryName = Annotated[str, Field(min_length=1, max_length=253)]


class RunRequest(_Body):
    host: InventoryName
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=100)
    wait_seconds: float = Field(default=10.0, ge=0, le=MAX_WAIT_SECONDS,
                                description="wait this long for the result; a run still going answers 202")


class ForwardRequest(_Body):
    forward: InventoryName
    host: InventoryName
    ttl_seconds: int | None = Field(default=None, ge=10, le=86400,
                                    description="default and limit: the forward's max_ttl_seconds, and the lease's end")
    wait_seconds: float = Field(default=10.0, ge=0, le=MAX_WAIT_SECONDS,
                                description="wait this long for the forward to open")


# --- views ----------------------------------------------------------------------------------------------


class HostView(BaseModel):
    name: str
    address: str
    port: int
    user: str
    labels: list[str]
    host_key_fingerprint: str
    host_key_algorithm: str | None
    client_key_source: str = Field(description="where the client key is kept (kms, ssm, ...); never the key")
    runtime_labels: dict[str, str]
    actions: list[str] = Field(description="the actions that may run on it")
    forwards: list[str] = Field(description="the forwards that may be opened to it")

    @classmethod
    def of(cls, host: SshHost, actions: list[str], forwards: list[str]) -> "HostView":
        return cls(**host.listing(), actions=actions, forwards=forwards)


class HostList(BaseModel):
    success: bool = True
    hosts: list[HostView]


class ActionList(BaseModel):
    success: bool = True
    actions: list[SshAction]


class LeaseView(BaseModel):
    lease_id: str
    state: LeaseState
    reason: str
    ttl_seconds: int
    requested_by: str
    requested_via: str
    requested_for: str
    requested_at: str
    request_expires_at: str
    approved_by: str | None = None
    approved_at: str | None = None
    expires_at: str | None = None
    seconds_left: float = 0
    ended_at: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @classmethod
    def of(cls, lease: SshLease, now: float) -> "LeaseView":
        return cls(lease_id=lease.lease_id, state=lease.state(now), reason=lease.reason, ttl_seconds=lease.ttl_seconds,
                   requested_by=lease.requested_by, requested_via=lease.requested_via,
                   requested_for=lease.requested_for, requested_at=lease.requested_at,
                   request_expires_at=iso(lease.request_expires_epoch), approved_by=lease.approved_by,
                   approved_at=lease.approved_at, expires_at=iso(lease.ends_epoch) if lease.ends_epoch else None,
                   seconds_left=round(lease.seconds_left(now), 3), ended_at=lease.ended_at, ended_by=lease.ended_by,
                   end_reason=lease.end_reason)


class LeaseAnswer(BaseModel):
    success: bool = True
    active: bool
    lease: LeaseView | None
    stopped: list[str] = Field(default_factory=list, description="runs and forwards stopped as the lease ended")

    @classmethod
    def of(cls, lease: SshLease | None, now: float, stopped: list[str] | None = None) -> "LeaseAnswer":
        return cls(active=lease is not None and lease.is_active(now),
                   lease=LeaseView.of(lease, now) if lease is not None else None, stopped=stopped or [])


class Requester(BaseModel):
    via: str
    key_id: str
    user_id: str


def requester_of(job: Job) -> Requester:
    labels = job.labels or {}
    via = labels.get(LABEL_VIA, "")
    return Requester(via=via, key_id=job.created_by if via == "api_key" else "", user_id=labels.get(LABEL_USER, ""))


class RunView(BaseModel):
    run_id: str
    status: JobStatus
    outcome: SshOutcome | None = Field(description="ok or failed once it ended (failed also when it was stopped); "
                                                   "validation_failed or denied when the runtime refused it")
    host: str
    action: str
    parameters: dict[str, Any] = Field(description="secret parameters show as [redacted]")
    requested: Requester
    lease_id: str
    created_at: str
    expires_at: str
    finished_at: str | None = None
    ended: Literal["exited", "signal", "timeout", "disconnected", "cancelled"] | None = None
    exit_status: int | None = None
    exit_signal: str | None = None
    command: str | None = Field(default=None, description="as sent, with secret words [redacted]")
    stdout: str | None = None
    stderr: str | None = None
    stdout_bytes: int | None = None
    stderr_bytes: int | None = None
    stdout_truncated: bool | None = None
    stderr_truncated: bool | None = None
    stdout_sha256: str | None = None
    stderr_sha256: str | None = None
    duration_ms: float | None = None
    failure: str | None = Field(default=None, description="why it never ran: host_key_mismatch, auth_failed, ...")
    error: str | None = None
    events_url: str


    @classmethod
    def of(cls, job: Job, outcome: AttemptOutcome | None) -> "RunView":
        """A run as it stands: its result once the command ran, or why it did not."""
        payload = job.payload
        found: dict[str, Any] = dict(outcome.detail) if outcome is not None else {}
        if isinstance(job.result, dict):
            found.update({name: job.result.get(name) for name in ("stdout", "stderr")})
        shown = {name: found[name] for name in _RESULT_FIELDS if found.get(name) is not None}
        return cls(run_id=job.job_id, status=job.status, outcome=outcome.outcome if outcome else None,
                   host=str(payload["host"]["name"]), action=str(payload["action"]["name"]),
                   parameters=shown_parameters(payload), requested=requester_of(job),
                   lease_id=(job.labels or {}).get(LABEL_LEASE, ""), created_at=job.created_at,
                   expires_at=iso(job.deadline), finished_at=job.finished_at,
                   error=found.get("error") or (job.error if job.status != JobStatus.complete else None),
                   events_url=job_events_url(job.job_id), **shown)


_RESULT_FIELDS = ("ended", "exit_status", "exit_signal", "command", "stdout", "stderr", "stdout_bytes", "stderr_bytes",
                  "stdout_truncated", "stderr_truncated", "stdout_sha256", "stderr_sha256", "duration_ms", "failure")


class RunList(BaseModel):
    success: bool = True
    runs: list[RunView]
    next_cursor: str | None = None


class ForwardView(BaseModel):
    forward_id: str
    status: JobStatus
    state: Literal["opening", "open", "closed", "failed"]
    outcome: SshOutcome | None = None
    host: str
    forward: str
    target: str
    requested: Requester
    lease_id: str
    created_at: str
    expires_at: str
    opened_at: str | None = None
    finished_at: str | None = None
    proxy_url: str = Field(description="HTTP to the forwarded service: this path and below, any method")
    failure: str | None = None
    error: str | None = None
    events_url: str


    @classmethod
    def of(cls, job: Job, opened: JobEvent | None, outcome: AttemptOutcome | None) -> "ForwardView":
        payload = job.payload
        forward = payload["forward"]
        detail = outcome.detail if outcome is not None else {}
        if not job.is_final:
            state: Literal["opening", "open", "closed", "failed"] = "open" if opened is not None else "opening"
        else:
            state = "closed" if outcome is not None and outcome.outcome == SshOutcome.ok else "failed"
        return cls(forward_id=job.job_id, status=job.status, state=state, outcome=outcome.outcome if outcome else None,
                   host=str(payload["host"]["name"]), forward=str(forward["name"]),
                   target=f"{forward.get('target_host', '127.0.0.1')}:{forward['target_port']}",
                   requested=requester_of(job), lease_id=(job.labels or {}).get(LABEL_LEASE, ""),
                   created_at=job.created_at, expires_at=iso(job.deadline), opened_at=opened.at if opened else None,
                   finished_at=job.finished_at, proxy_url=forward_proxy_url(job.job_id),
                   failure=detail.get("failure"), error=detail.get("error"), events_url=job_events_url(job.job_id))


def forward_proxy_url(forward_id: str) -> str:
    return f"/api/infra/ssh/forwards/{forward_id}/proxy/"


class ForwardList(BaseModel):
    success: bool = True
    forwards: list[ForwardView]
    next_cursor: str | None = None
