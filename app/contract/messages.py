"""The contract between the API and runtime workers: job and control messages on the queues, and
the bodies of the runtime HTTP protocol (`/v1/cloud/runtimes/*`).

Workers import `app.contract` and nothing else from `app`; it depends only on pydantic. It runs
past 400 lines because the runtime protocol's bodies are one contract, read side by side with the
spec; the message families that grew apart (models, packages, SSH) have modules of their own.
"""

import shlex
from enum import Enum
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.contract.bodies import JsonBody
from app.contract.packages import NPM, PYPI, PackageCacheUsage, PackageSpec, parse_start_command
from app.contract.policy import SandboxPolicy
from app.contract.sandbox_files import SandboxFile


class JobType(str, Enum):
    mcp_test = "mcp.test"
    mcp_run = "mcp.run"
    model_inspect = "model.inspect"
    model_pull = "model.pull"
    model_preload = "model.preload"
    model_attach = "model.attach"  # created by attaching a model profile (app.contract.models)
    agent_run = "agent.run"
    tool_run = "tool.run"
    # Infra SSH (app.contract.ssh.jobs): created by the API's SSH service under an approved lease,
    # never through POST /v1/jobs.
    ssh_run = "ssh.run"
    ssh_forward = "ssh.forward"


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


RuntimeKind = Literal["node", "python", "ollama", "vllm", "sglang"]
RUNTIME_KINDS: tuple[RuntimeKind, ...] = get_args(RuntimeKind)


class _Strict(JsonBody):
    """Unknown fields refused, JSON's types kept apart (app.contract.bodies)."""


# A value sealed by app.contract.sealing.seal, bounded well inside a queue message. Its form is not
# checked here: one that does not open fails its job with a reason, not the whole message.
SealedValue = Annotated[str, Field(max_length=131_072)]


# --- queue messages --------------------------------------------------------------------------


class JobMessage(_Strict):
    kind: Literal["job"] = "job"
    job_id: str
    workspace_id: str
    type: JobType
    payload: dict[str, Any] = Field(default_factory=dict)
    expires_at: float  # epoch seconds; the worker stops the job at this time
    dispatch: int = 1  # how many times the API has sent this job (re-dispatch after failover)
    policy: SandboxPolicy | None = None  # for jobs that run sandboxes
    start_seq: int = 0  # where the claim's `start` event goes, if known at dispatch (0: the API looks it up)
    # The job's secrets (a sandbox's env, a provider token): a JSON object sealed with
    # app.contract.sealing.seal under the runtime's sealing key, context = job_id. The worker opens it
    # after the claim and hands it to the executor as `ctx.secrets`; None: the job has none.
    secrets: SealedValue | None = None


ControlAction = Literal["cancel", "tools.list", "tools.call", "sandbox.inspect", "sandbox.stop", "sandbox.start",
                        "sandbox.restart", "sandbox.update", "proxy", "ssh.proxy", "model.status", "model.proxy",
                        "model.evict"]


class ControlMessage(_Strict):
    """A synchronous request for a running job (a sandbox's tools/list, tools/call, cancel)."""

    kind: Literal["control"] = "control"
    request_id: str
    workspace_id: str
    job_id: str
    action: ControlAction
    arguments: dict[str, Any] = Field(default_factory=dict)
    deadline: float  # epoch seconds after which the answer is no longer awaited
    # The job's secrets as they are now (e.g. a sandbox's env changed by `sandbox.update`), sealed as
    # for JobMessage.secrets (context = job_id); they replace the running job's `ctx.secrets` before
    # the action runs. None: unchanged.
    secrets: SealedValue | None = None


QueueMessage = Annotated[JobMessage | ControlMessage, Field(discriminator="kind")]


class QueueEnvelope(_Strict):
    message: QueueMessage


# --- runtime HTTP bodies ---------------------------------------------------------------------


def _check_control_url(url: str) -> str:
    if any(character.isspace() or not character.isprintable() for character in url):
        raise ValueError("control_url must not contain spaces or control characters")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise ValueError("control_url has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("control_url must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("control_url must not carry credentials, a query or a fragment")
    return url


# Where the worker's direct control endpoint answers (workers.control_server); the API POSTs
# signed control messages to `<control_url>/control` (CONTROL_PATH), and those whose action is in
# STREAMED_CONTROL_ACTIONS may go to `<control_url>/control/stream` (CONTROL_STREAM_PATH) instead.
# The pattern states in the OpenAPI document what `_check_control_url` accepts (a host name or
# IPv4 address, a port in range, an ASCII path; no credentials, query or fragment).
CONTROL_URL_PATTERN = (r"^https?://[A-Za-z0-9._~-]+"
                       r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
                       r"(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$")
ControlUrl = Annotated[str, Field(min_length=8, max_length=300, pattern=CONTROL_URL_PATTERN),
                       AfterValidator(_check_control_url)]


class GpuInfo(BaseModel):
    name: str = Field(max_length=200)
    memory_mb: int = Field(ge=0)


IsolationDriver = Literal["bubblewrap", "rlimits", "none"]
MAX_TOOL_DIRS = 64


class RuntimeOffers(_Strict):
    """What a runtime offers beyond its job types, so dispatch places a job only where it can run."""

    # Host directories every sandbox sees read-only at the same path (`--sandbox-tool-dir`): a
    # sandbox whose command lives under one can run only on a runtime that offers it.
    tool_dirs: list[Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")]] = Field(
        default_factory=list, max_length=MAX_TOOL_DIRS)
    # How sandboxes are confined: `bubblewrap` (namespaces), `rlimits` (limits only), `none` (no sandboxes).
    isolation: IsolationDriver = "none"


class RegisterRequest(_Strict):
    join_token: str = Field(min_length=8, max_length=200)
    name: str = Field(default="runtime", min_length=1, max_length=100)
    capabilities: list[JobType] = Field(default_factory=list, max_length=len(JobType))
    runtimes: dict[RuntimeKind, bool] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=64)
    max_concurrent_jobs: int = Field(default=2, ge=1, le=256)
    free_disk_bytes: int = Field(default=0, ge=0)
    version: str = Field(default="", max_length=100)
    queue_mode: Literal["sqs", "lease"] = "lease"
    control_url: ControlUrl | None = None
    offers: RuntimeOffers | None = None  # None: a worker that does not say (treat as offering nothing more)


class RegisterResponse(BaseModel):
    runtime_id: str
    runtime_token: str
    # The runtime key (`brk_...`, app.contract.sealing), returned once: the runtime derives from it
    # the key that verifies what the API signs for it and the key that opens what the API seals for
    # it. None from an API that issues none; the worker then verifies with its token's digest.
    runtime_key: str | None = None
    workspace_id: str
    shared: bool
    jobs_queue_url: str  # job messages; poll only while there is a free slot
    control_queue_url: str  # control messages for running jobs; poll always
    heartbeat_interval_seconds: int
    visibility_seconds: int


MAX_REPORTED_JOBS = 256  # RegisterRequest.max_concurrent_jobs' bound


class RunningJob(_Strict):
    """A job this runtime holds a claim on (executing, or delivering its last events)."""

    workspace_id: str = Field(min_length=1, max_length=100)
    job_id: str = Field(min_length=1, max_length=100)
    claim_id: str = Field(min_length=1, max_length=100)


class HeartbeatRequest(_Strict):
    active_jobs: int = Field(default=0, ge=0)
    free_disk_bytes: int | None = Field(default=None, ge=0)
    load: float | None = Field(default=None, ge=0)
    draining: bool = False
    control_url: ControlUrl | None = None  # sent every time: a restarted worker may listen elsewhere
    # Every job this process holds a claim on. A job the API has running here under a claim that is
    # missing from two heartbeats in a row is no longer here. None: a worker that does not say.
    jobs: list[RunningJob] | None = Field(default=None, max_length=MAX_REPORTED_JOBS)
    offers: RuntimeOffers | None = None  # as at registration; sent every time, like control_url
    # The runtime's package cache (what `/v1/system/storage` shows its workspace). None: no cache.
    package_cache: PackageCacheUsage | None = None
    # The process is exiting and this is its last heartbeat: the runtime is offline from now, not
    # only once its heartbeats are missed.
    exiting: bool = False


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
    attempt: int = Field(default=1, ge=1)  # the message's receive count
    start_seq: int = Field(default=0, ge=0)  # copied from the JobMessage


class ClaimResponse(BaseModel):
    """Whether this delivery may run the job; `claimed: false` means drop the message.

    A granted claim has recorded the job's `start` event; the claimant's events go from `next_seq`.
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
    # The claimant lets the job go unfinished (it is stopping): its progress is delivered, and the
    # job should go back to `queued` and be dispatched again, elsewhere if this runtime is draining.
    release: bool = False


class LeaseRenewed(BaseModel):
    ok: bool
    cancel_requested: bool = False


# What one event and one batch may carry. The API refuses more with 413 (an event whose `data`, as
# compact JSON, is over EVENT_DATA_MAX_BYTES; a body over EVENT_BATCH_MAX_BYTES); the worker never
# sends more: it cuts a longer message and replaces larger data with a `truncated` marker before
# the event is spooled, and keeps its batches well inside both batch limits.
EVENT_MESSAGE_MAX_CHARS = 4000
EVENT_DATA_MAX_BYTES = 131_072
EVENT_BATCH_MAX_EVENTS = 100
EVENT_BATCH_MAX_BYTES = 1_048_576


class EventIn(_Strict):
    seq: int = Field(ge=1)
    step: str = Field(min_length=1, max_length=100)
    status: EventStatus
    message: str = Field(default="", max_length=EVENT_MESSAGE_MAX_CHARS)
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(_Strict):
    claim_id: str = Field(min_length=1, max_length=100)
    events: list[EventIn] = Field(min_length=1, max_length=EVENT_BATCH_MAX_EVENTS)


class EventBatchResult(BaseModel):
    accepted: int
    duplicates: int
    job_status: JobStatus
    cancel_requested: bool = False


# Why a control action failed, so the API can answer with the right status: not_running → 409,
# not_found → 404, bad_request → 400, forbidden → 403, failed (or empty) → 502.
ControlErrorCode = Literal["", "not_running", "not_found", "bad_request", "forbidden", "failed"]


class ControlReply(_Strict):
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
    code: ControlErrorCode = ""


# --- the direct control endpoint ------------------------------------------------------------------
# `POST {control_url}/control`: a signed ControlMessage in, a ControlReply out (200), or 401 (unsigned,
# forged, skewed, past its deadline, replayed), 413 (too large), 503 (not registered yet), 504 (the
# action outlived its deadline). `POST {control_url}/control/stream`: the same request, checked the
# same way, for an action in STREAMED_CONTROL_ACTIONS (any other: 400). Its answer is either the
# proxied response itself, streamed as it arrives (the header CONTROL_ANSWER_HEADER says
# `proxied`; its status and headers are the engine's), or a ControlReply saying why nothing was
# forwarded (`reply`, with the status the API would give that reply's code). A deadline reached
# before the response started answers 504; after, the body simply ends.
CONTROL_PATH = "/control"
CONTROL_STREAM_PATH = "/control/stream"
STREAMED_CONTROL_ACTIONS = frozenset({"model.proxy"})
CONTROL_ANSWER_HEADER = "x-berth-control"
ControlAnswerKind = Literal["proxied", "reply"]


# --- control arguments and results (sandboxes) -------------------------------------------------


class ToolCallArguments(_Strict):
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=20, gt=0, le=25)


class SandboxUpdate(_Strict):
    """Changes to a running sandbox: a new deadline at once. A new env is a secret: it comes as the
    control message's `secrets` (`{"env": {...}}`), and the server gets it at its next (re)start."""

    expires_at: float | None = None


PROXY_TOKEN_MAX_CHARS = 4000
PROXY_PATH_MAX_CHARS = 4000
PROXY_QUERY_MAX_CHARS = 8000


class ProxyRequest(_Strict):
    token: str = Field(min_length=1, max_length=PROXY_TOKEN_MAX_CHARS)  # proxy-auth token, verified by the runtime
    method: str = Field(pattern=r"^[A-Z]{3,7}$")
    path: str = Field(max_length=PROXY_PATH_MAX_CHARS)  # below the server's root, without a leading slash
    query: str = Field(default="", max_length=PROXY_QUERY_MAX_CHARS)
    headers: dict[str, str] = Field(default_factory=dict)
    body_b64: str = ""


class ProxyResponse(BaseModel):
    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body_b64: str = ""


# --- sandbox payloads ------------------------------------------------------------------------------

# How a package's registry type is run by hand: what `start_command` means the same package.
_PACKAGE_RUNNERS = {NPM: ("npx", "-y", "@"), PYPI: ("uvx", "==")}


class SandboxServer(BaseModel):
    """What an `mcp.test` / `mcp.run` payload says to run; the API's payload carries more fields
    beside these (ignored here).

    A server is a `package` as the MCP registry describes one (app.contract.packages), which the
    runtime installs and runs read-only, or a `start_command`. The start commands `npx -y
    NAME[@VERSION] [ARGS]` and `uvx NAME[==VERSION] [ARGS]` mean that package. A package serving
    streamable HTTP makes the transport `http`; one serving SSE is refused. Raises ValueError (a
    ValidationError) saying what is wrong.
    """

    model_config = ConfigDict(extra="ignore")

    start_command: str = Field(default="", max_length=4000)
    package: PackageSpec | None = None
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    builtin: Literal["matrixshell"] | None = None  # a server shipped with the worker
    files: list[SandboxFile] = Field(default_factory=list, max_length=50)  # fetched before the server starts

    @model_validator(mode="after")
    def _what_runs(self) -> "SandboxServer":
        if self.package is None and self.start_command.strip():
            self.package = parse_start_command(self.start_command)
        if self.package is None:
            if not self.start_command.strip():
                raise ValueError("give start_command or package")
            return self
        transport = self.package.transport.type
        if transport == "sse":
            raise ValueError("the package serves the SSE transport, which sandboxes do not speak: use its stdio or "
                             "streamable-http package")
        if transport == "streamable-http":
            self.transport = "http"
        return self

    @property
    def command(self) -> str:
        """The command the sandbox policy judges: `start_command`, or for a package given alone
        the start command that means it (`npx -y NAME@VERSION ARGS`, `uvx NAME==VERSION ARGS`);
        empty for a package of a type no such command runs. PackageSpecError for a package
        argument without a value."""
        if self.start_command.strip() or self.package is None or self.package.registry_type not in _PACKAGE_RUNNERS:
            return self.start_command
        runner = _PACKAGE_RUNNERS[self.package.registry_type]
        name = self.package.identifier + (f"{runner[-1]}{self.package.version}" if self.package.version else "")
        return shlex.join([*runner[:-1], name, *self.package.command_arguments()])
