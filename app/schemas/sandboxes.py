"""Bodies of the sandbox routes: `/v1/sandbox/sessions`, `/api/sandboxes`, `/api/containers`,
the runtime proxy and MatrixShell."""

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.clock import iso
from app.contract.bodies import JsonBody
from app.contract.messages import SandboxServer
from app.contract.packages import PackageSpec
from app.domain.installations import INSTALLATION_LABEL
from app.domain.jobs import Job
from app.domain.runtimes import Runtime, WaitingFor
from app.domain.sandboxes import Sandbox, server_runtime
from app.schemas.jobs import (
    NAMES_A_SERVER,
    RUNTIME_DESCRIPTION,
    TOOL_DIRS_DESCRIPTION,
    TTL_DESCRIPTION,
    WAIT_DESCRIPTION,
    WAITING_FOR_DESCRIPTION,
    ToolDir,
    WaitingForView,
)
from app.schemas.limits import policy_limit


def session_events_url(session_id: str) -> str:
    return f"/v1/sandbox/sessions/{session_id}/events"


class SandboxRequest(JsonBody):
    model_config = ConfigDict(json_schema_extra=NAMES_A_SERVER)

    start_command: str = Field(default="", max_length=4000,
                               examples=["npx -y @modelcontextprotocol/server-everything@2026.8.31"],
                               description="the server's command; `npx -y NAME[@VERSION]` and `uvx NAME[==VERSION]` "
                                           "mean that package (the runtime installs it once, outside the sandbox)")
    package: PackageSpec | None = Field(default=None, description="a package as the MCP registry describes one, "
                                                                   "instead of start_command")
    runtime: Literal["node", "python"] | None = Field(default=None, description=RUNTIME_DESCRIPTION)
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    ttl_seconds: int | None = Field(default=None, ge=1, description=TTL_DESCRIPTION,
                                    json_schema_extra=policy_limit("max_ttl_seconds"))
    entity_id: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    tool_dirs: list[ToolDir] | None = Field(default=None, max_length=16, description=TOOL_DIRS_DESCRIPTION)
    wait: bool = Field(default=False, description=WAIT_DESCRIPTION)

    @model_validator(mode="after")
    def _names_a_server(self) -> "SandboxRequest":
        SandboxServer.model_validate(self.model_dump(exclude={"ttl_seconds", "wait"}, exclude_none=True,
                                                     by_alias=True))
        return self

    def payload(self) -> dict[str, Any]:
        """The sandbox job's payload (an McpServerPayload)."""
        return self.model_dump(mode="json", exclude={"ttl_seconds", "wait"}, exclude_none=True, by_alias=True)


class SandboxResponse(BaseModel):
    success: bool = True
    session_id: str
    job_id: str
    status: str
    expires_at: str
    events_url: str
    waiting_for: WaitingForView | None = Field(default=None, description=WAITING_FOR_DESCRIPTION)
    warnings: list[str] = Field(default_factory=list, description="What a person should know, in words")

    @classmethod
    def of(cls, job: Job, waiting: WaitingFor | None = None) -> "SandboxResponse":
        return cls(session_id=job.job_id, job_id=job.job_id, status=job.status.value, expires_at=iso(job.deadline),
                   events_url=session_events_url(job.job_id), waiting_for=WaitingForView.of(waiting),
                   warnings=[waiting.message] if waiting else [])


class SandboxView(BaseModel):
    id: str
    session_id: str
    job_id: str
    type: str
    status: str = Field(description="the job's status")
    state: str = Field(description="the server's state: starting, running, stopped, failed, ending (deleted, "
                                   "its runtime is stopping it) or ended")
    runtime: str
    transport: str
    start_command: str
    env: list[str] = Field(description="variable names only; values are never shown")
    labels: dict[str, str]
    entity_id: str | None = None
    runtime_id: str | None = None
    isolation: str | None = Field(None, description="how the runtime confined it: bubblewrap or rlimits")
    limits: dict[str, Any] | None = Field(None, description="the limits in force, as the runtime reported them")
    created_at: str
    expires_at: str
    error: str | None = None
    events_url: str
    waiting_for: WaitingForView | None = Field(default=None, description=WAITING_FOR_DESCRIPTION)

    @classmethod
    def of(cls, sandbox: Sandbox, waiting: WaitingFor | None = None) -> Self:
        job, payload = sandbox.job, sandbox.job.payload
        return cls(
            id=job.job_id, session_id=job.job_id, job_id=job.job_id, type=job.type.value, status=job.status.value,
            state=sandbox.state, runtime=payload.get("runtime") or server_runtime(_command_of(payload)),
            transport=payload.get("transport", "stdio"), waiting_for=WaitingForView.of(waiting),
            start_command=_command_of(payload), env=(job.secret_names or {}).get("env", []),
            labels=job.labels or payload.get("labels", {}), entity_id=payload.get("entity_id"),
            runtime_id=job.runtime_id, isolation=sandbox.isolation, limits=sandbox.limits, created_at=job.created_at,
            expires_at=iso(job.deadline), error=job.error, events_url=session_events_url(job.job_id),
        )


class SandboxDetail(SandboxView):
    """One sandbox, as its own routes answer (a list holds `SandboxView`s)."""

    success: bool = True


class SandboxList(BaseModel):
    success: bool = True
    sandboxes: list[SandboxView]
    next_cursor: str | None = None


class SandboxPatch(JsonBody):
    ttl_seconds: int | None = Field(default=None, ge=1, description="new total lifetime, from creation; at most the "
                                    "policy's max_ttl_seconds", json_schema_extra=policy_limit("max_ttl_seconds"))
    env: dict[str, str] | None = Field(default=None, max_length=100, description="applies at the next (re)start")
    labels: dict[str, str] | None = Field(default=None, max_length=50)


class ToolView(BaseModel):
    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)


class ToolList(BaseModel):
    success: bool = True
    tools: list[ToolView]


class ToolCallRequest(JsonBody):
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallResponse(BaseModel):
    success: bool = True
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
    installation_id: str | None = Field(None, description="the installation it serves; none for an ad-hoc sandbox")
    isolation: str | None = None
    pids: list[int] = Field(default_factory=list)
    rss_bytes: int = 0
    detail: str = ""

    @classmethod
    def of(cls, job: Job, inspected: dict[str, Any] | Exception) -> "ContainerView":
        """A running sandbox as its runtime reported it (`sandbox.inspect`), or why it could not."""
        installation_id = (job.payload.get("labels") or {}).get(INSTALLATION_LABEL)
        if isinstance(inspected, Exception):
            return cls(id=job.job_id, type=job.type.value, runtime_id=job.runtime_id, state="unknown",
                       installation_id=installation_id, detail=str(inspected))
        return cls(id=job.job_id, type=job.type.value, runtime_id=job.runtime_id,
                   state=inspected.get("state", "unknown"), installation_id=installation_id,
                   isolation=inspected.get("isolation"), pids=inspected.get("pids", []),
                   rss_bytes=inspected.get("rss_bytes", 0))


class ContainerList(BaseModel):
    success: bool = True
    containers: list[ContainerView]


class ShellExecRequest(JsonBody):
    command: str = Field(min_length=1, max_length=8000)
    timeout_seconds: float = Field(default=15, gt=0, le=20)


class ShellExecResult(BaseModel):
    success: bool = True
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
