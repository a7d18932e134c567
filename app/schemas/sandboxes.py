"""Bodies of the sandbox routes: `/v1/sandbox/sessions`, `/api/sandboxes`, `/api/containers`,
the runtime proxy and MatrixShell."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxRequest(_Body):
    start_command: str = Field(min_length=1, max_length=4000, examples=["npx -y @modelcontextprotocol/server-memory"])
    runtime: Literal["node", "python"] = "node"
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    ttl_seconds: int | None = Field(default=None, ge=1)
    entity_id: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)


class SandboxResponse(BaseModel):
    session_id: str
    job_id: str
    status: str
    expires_at: str
    events_url: str


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
