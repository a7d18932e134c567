"""The contract between the API and runtime workers: queue messages and runtime HTTP bodies.

Workers import this module and nothing else from `app`; it depends only on pydantic.
"""

from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class JobType(str, Enum):
    mcp_test = "mcp.test"
    mcp_run = "mcp.run"
    model_inspect = "model.inspect"
    model_pull = "model.pull"
    model_preload = "model.preload"
    agent_run = "agent.run"
    tool_run = "tool.run"


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    complete = "complete"
    error = "error"
    expired = "expired"
    cancelled = "cancelled"


FINAL_JOB_STATUSES = frozenset({JobStatus.complete, JobStatus.error, JobStatus.expired, JobStatus.cancelled})


class EventStatus(str, Enum):
    queued = "queued"
    start = "start"
    ok = "ok"
    error = "error"
    running = "running"
    expired = "expired"
    cancelled = "cancelled"
    complete = "complete"


RUNTIME_KINDS = ("node", "python", "ollama", "vllm", "sglang")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- queue messages --------------------------------------------------------------------------


class JobMessage(_Strict):
    kind: Literal["job"] = "job"
    job_id: str
    workspace_id: str
    type: JobType
    payload: dict[str, Any] = Field(default_factory=dict)
    expires_at: float  # epoch seconds; the worker stops the job at this time
    dispatch: int = 1  # how many times the API has sent this job (re-dispatch after failover)


class ControlMessage(_Strict):
    """A synchronous request for a running job (a sandbox's tools/list, tools/call, cancel)."""

    kind: Literal["control"] = "control"
    request_id: str
    workspace_id: str
    job_id: str
    action: Literal["tools.list", "tools.call", "cancel", "proxy", "exec"]
    arguments: dict[str, Any] = Field(default_factory=dict)
    deadline: float  # epoch seconds after which the answer is no longer awaited


QueueMessage = Annotated[Union[JobMessage, ControlMessage], Field(discriminator="kind")]


class QueueEnvelope(_Strict):
    message: QueueMessage


# --- runtime HTTP bodies ---------------------------------------------------------------------


class GpuInfo(BaseModel):
    name: str = Field(max_length=200)
    memory_mb: int = Field(ge=0)


class RegisterRequest(_Strict):
    join_token: str = Field(min_length=8, max_length=200)
    name: str = Field(default="runtime", min_length=1, max_length=100)
    capabilities: list[JobType] = Field(default_factory=list, max_length=len(JobType))
    runtimes: dict[Literal["node", "python", "ollama", "vllm", "sglang"], bool] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=64)
    max_concurrent_jobs: int = Field(default=2, ge=1, le=256)
    free_disk_bytes: int = Field(default=0, ge=0)
    version: str = Field(default="", max_length=100)
    queue_mode: Literal["sqs", "lease"] = "lease"


class RegisterResponse(BaseModel):
    runtime_id: str
    runtime_token: str
    workspace_id: str
    shared: bool
    jobs_queue_url: str  # job messages; poll only while there is a free slot
    control_queue_url: str  # control messages for running jobs; poll always
    heartbeat_interval_seconds: int
    visibility_seconds: int


class HeartbeatRequest(_Strict):
    active_jobs: int = Field(default=0, ge=0)
    free_disk_bytes: int | None = Field(default=None, ge=0)
    load: float | None = Field(default=None, ge=0)
    draining: bool = False


class HeartbeatResponse(BaseModel):
    ok: bool
    status: str
    heartbeat_interval_seconds: int


class LeaseRequest(_Strict):
    queue: Literal["jobs", "control"] = "jobs"
    max_messages: int = Field(default=1, ge=1, le=10)
    wait_seconds: int = Field(default=10, ge=0, le=20)
    visibility_seconds: int = Field(default=60, ge=5, le=43200)


class LeasedMessage(BaseModel):
    receipt: str
    receive_count: int
    body: str


class LeaseResponse(BaseModel):
    messages: list[LeasedMessage]


class ReceiptRequest(_Strict):
    queue: Literal["jobs", "control"] = "jobs"
    receipt: str = Field(min_length=1, max_length=4096)
    visibility_seconds: int | None = Field(default=None, ge=0, le=43200)


class ClaimRequest(_Strict):
    dispatch: int = Field(ge=1)
    worker_id: str = Field(min_length=1, max_length=100)
    lease_seconds: int = Field(default=60, ge=5, le=3600)


class ClaimResponse(BaseModel):
    """Whether this delivery may run the job; `claimed: false` means drop the message.

    A claim is a lease: it lapses unless renewed (`/lease`), so a job whose worker died can be
    claimed again by the next delivery. `claim_id` fences every later write of the claimant.
    """

    claimed: bool
    status: JobStatus
    reason: str = ""
    claim_id: str = ""
    next_seq: int = 1


class LeaseRenewal(_Strict):
    claim_id: str = Field(min_length=1, max_length=100)
    lease_seconds: int = Field(default=60, ge=5, le=3600)


class LeaseRenewed(BaseModel):
    ok: bool
    cancel_requested: bool = False


class EventIn(_Strict):
    seq: int = Field(ge=1)
    step: str = Field(min_length=1, max_length=100)
    status: EventStatus
    message: str = Field(default="", max_length=4000)
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(_Strict):
    claim_id: str = Field(min_length=1, max_length=100)
    events: list[EventIn] = Field(min_length=1, max_length=100)


class EventBatchResult(BaseModel):
    accepted: int
    duplicates: int
    job_status: JobStatus
    cancel_requested: bool = False


class ControlReply(_Strict):
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
