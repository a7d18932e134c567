"""Bodies of the sandbox routes: `/v1/sandbox/sessions`, `/api/sandboxes`, `/api/containers`,
the runtime proxy and MatrixShell."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.clock import iso
from app.contract.messages import SandboxServer
from app.contract.packages import PackageSpec
from app.domain.jobs import Job
from app.domain.runtimes import Runtime
from app.domain.sandboxes import Sandbox


def session_events_url(session_id: str) -> str:
    return f"/v1/sandbox/sessions/{session_id}/events"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxRequest(_Body):
    start_command: str = Field(default="", max_length=4000,
                               examples=["npx -y @modelcontextprotocol/server-everything@2026.8.31"],
                               description="the server's command; `npx -y NAME[@VERSION]` and `uvx NAME[==VERSION]` "
                                           "mean that package (the runtime installs it once, outside the sandbox)")
    package: PackageSpec | None = Field(default=None, description="a package as the MCP registry describes one, "
                                                                   "instead of start_command")
    runtime: Literal["node", "python"] = "node"
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    ttl_seconds: int | None = Field(default=None, ge=1)
    entity_id: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _names_a_server(self) -> "SandboxRequest":
        SandboxServer.model_validate(self.model_dump(exclude={"ttl_seconds"}, exclude_none=True, by_alias=True))
        return self

    def payload(self) -> dict[str, Any]:
        """The sandbox job's payload (an McpServerPayload)."""
        return self.model_dump(mode="json", exclude={"ttl_seconds"}, exclude_none=True, by_alias=True)


class SandboxResponse(BaseModel):
    session_id: str
    job_id: str
    status: str
    expires_at: str
    events_url: str

    @classmethod
    def of(cls, job: Job) -> "SandboxResponse":
        return cls(session_id=job.job_id, job_id=job.job_id, status=job.status.value, expires_at=iso(job.deadline),
                   events_url=session_events_url(job.job_id))


class SandboxView(BaseModel):
    id: str
    session_id: str
    job_id: str
    type: str
    status: str = Field(description="the job's status")
    state: str = Field(description="the server's state: starting, running, stopped, failed or ended")
    runtime: str
    transport: str
    start_command: str
    env: list[str] = Field(description="variable names only; values are never shown")
    labels: dict[str, str]
    entity_id: str | None = None
    runtime_id: str | None = None
    isolation: str | None = None
    created_at: str
    expires_at: str
    error: str | None = None
    events_url: str

    @classmethod
    def of(cls, sandbox: Sandbox) -> "SandboxView":
        job, payload = sandbox.job, sandbox.job.payload
        return cls(
            id=job.job_id, session_id=job.job_id, job_id=job.job_id, type=job.type.value, status=job.status.value,
            state=sandbox.state, runtime=payload.get("runtime", "node"), transport=payload.get("transport", "stdio"),
            start_command=_command_of(payload), env=(job.secret_names or {}).get("env", []),
            labels=job.labels or payload.get("labels", {}), entity_id=payload.get("entity_id"),
            runtime_id=job.runtime_id, isolation=sandbox.isolation, created_at=job.created_at,
            expires_at=iso(job.deadline), error=job.error, events_url=session_events_url(job.job_id),
        )


class SandboxList(BaseModel):
    success: bool = True
    sandboxes: list[SandboxView]
    next_cursor: str | None = None


class SandboxPatch(_Body):
    ttl_seconds: int | None = Field(default=None, ge=1, description="new total lifetime, from creation")
    env: dict[str, str] | None = Field(default=None, max_length=100, description="applies at the next (re)start")
    labels: dict[str, str] | None = Field(default=None, max_length=50)


class ToolView(BaseModel):
    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)


class ToolList(BaseModel):
    tools: list[ToolView]


class ToolCallRequest(_Body):
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallResponse(BaseModel):
    ok: bool
    result: dict[str, Any]


class ActionResponse(BaseModel):
    success: bool = True
    id: str
    action: str
    state: str


class ContainerView(BaseModel):
    id: str
    type: str
    runtime_id: str | None
    state: str
    isolation: str | None = None
    pids: list[int] = Field(default_factory=list)
    rss_bytes: int = 0
    detail: str = ""

    @classmethod
    def of(cls, job: Job, inspected: dict[str, Any] | Exception) -> "ContainerView":
        """A running sandbox as its runtime reported it (`sandbox.inspect`), or why it could not."""
        if isinstance(inspected, Exception):
            return cls(id=job.job_id, type=job.type.value, runtime_id=job.runtime_id, state="unknown",
                       detail=str(inspected))
        return cls(id=job.job_id, type=job.type.value, runtime_id=job.runtime_id,
                   state=inspected.get("state", "unknown"), isolation=inspected.get("isolation"),
                   pids=inspected.get("pids", []), rss_bytes=inspected.get("rss_bytes", 0))


class ContainerList(BaseModel):
    success: bool = True
    containers: list[ContainerView]


class ShellExecRequest(_Body):
    command: str = Field(min_length=1, max_length=8000)
    timeout_seconds: float = Field(default=15, gt=0, le=20)


class ShellExecResult(BaseModel):
    stdout: str
    stderr: str
    exit_code: int


def runtime_config_view(job: Job, runtime: Runtime | None, base_url: str) -> dict[str, Any]:
    """How to reach a sandbox's server through the runtime proxy (`/api/runtime/config/:id`)."""
    proxy = f"{base_url}/api/runtime/proxy/{job.job_id}/"
    transport = job.payload.get("transport", "stdio")
    return {
        "success": True,
        "sandbox_id": job.job_id,
        "status": job.status.value,
        "transport": transport,
        "runtime": {"id": runtime.runtime_id, "name": runtime.name, "shared": runtime.shared} if runtime else None,
        "proxy_url": proxy,
        "mcp_url": proxy + "mcp" if job.payload.get("transport") == "http" else None,
        "proxy_auth_url": f"{base_url}/api/runtime/proxy-auth/{job.job_id}",
    }


def shell_status_view(sandbox: Sandbox | None) -> dict[str, Any]:
    """`/v1/matrixshell/status`: the workspace's shell sandbox, if one is installed."""
    if sandbox is None:
        return {"enabled": True, "installed": False, "status": "not_installed"}
    job = sandbox.job
    return {"enabled": True, "installed": sandbox.state == "running", "status": sandbox.state, "job_id": job.job_id,
            "runtime_id": job.runtime_id, "isolation": sandbox.isolation, "expires_at": iso(job.deadline)}


def _command_of(payload: dict[str, Any]) -> str:
    try:
        return SandboxServer.model_validate(payload).command
    except ValueError:  # a payload stored before packages existed, or unreadable: show what was given
        return str(payload.get("start_command", ""))
