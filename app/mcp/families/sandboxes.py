"""Sandboxes: MCP servers run in isolation on a runtime (`/api/sandboxes`, `/v1/sandbox/sessions`).

Creating one returns at once with the sandbox to poll (`list_sandboxes`, or a tool call with
`wait_seconds`); with `wait_seconds` it first waits, bounded, for the server to come up, as the
REST readiness wait (`GET /v1/sandbox/sessions/:id/tools?wait_seconds=`) does.
"""

from typing import Annotated, Any, Literal

from anyio import to_thread
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field, ValidationError

from app import composition
from app.auth.principal import Tier
from app.contract.messages import JobStatus
from app.contract.packages import PackageSpec
from app.errors import Unprocessable
from app.mcp.families import SandboxId, WaitSeconds
from app.mcp.tools import TieredTool, caller_of, changes, reads, tool
from app.schemas.jobs import RUNTIME_DESCRIPTION, WAIT_DESCRIPTION
from app.schemas.sandboxes import ActionResponse, SandboxRequest, SandboxView, ToolCallResponse, ToolView


class SandboxPage(BaseModel):
    sandboxes: list[SandboxView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class SandboxStarted(BaseModel):
    sandbox: SandboxView
    tools: list[ToolView] | None = Field(
        description="the server's tools, when the wait ended with it running; null otherwise")
    next: str = Field(description="what to do next")


def list_sandboxes(
    ctx: Context,
    status: Annotated[JobStatus | None, Field(description="only sandboxes whose job has this status")] = None,
    limit: Annotated[int, Field(ge=1, le=200, description="at most this many")] = 50,
    cursor: Annotated[str | None, Field(max_length=2000, description="`next_cursor` of the previous page")] = None,
) -> SandboxPage:
    """The workspace's sandboxes, newest first, with each server's state (starting, running,
    stopped, failed, ended)."""
    sandboxes = composition.services().sandboxes
    page = sandboxes.page(caller_of(ctx), limit=limit, cursor=cursor, status=status)
    return SandboxPage(sandboxes=[SandboxView.of(sandbox) for sandbox in page.items], next_cursor=page.cursor)


async def create_sandbox(
    ctx: Context,
    start_command: Annotated[str, Field(max_length=4000, description=(
        "the server's command, e.g. `npx -y @modelcontextprotocol/server-everything@2026.8.31`; `npx -y "
        "NAME[@VERSION]` and `uvx NAME[==VERSION]` mean that package (installed once, outside the sandbox); the "
        "policy's command rules apply"))] = "",
    package: Annotated[PackageSpec | None, Field(description=(
        "instead of start_command: a package as the MCP registry's server.json describes one"))] = None,
    runtime: Annotated[Literal["node", "python"] | None, Field(description=RUNTIME_DESCRIPTION)] = None,
    transport: Literal["stdio", "http"] = "stdio",
    env: Annotated[dict[str, str], Field(max_length=100, description="environment variables for the server; "
                                                                     "sealed, never shown again")] = {},  # noqa: B006
    ttl_seconds: Annotated[int | None, Field(ge=1, description="lifetime in seconds (default and maximum: the "
                                                                "policy's)")] = None,
    labels: Annotated[dict[str, str], Field(max_length=50, description="metadata")] = {},  # noqa: B006
    wait: Annotated[bool, Field(description=WAIT_DESCRIPTION)] = False,
    wait_seconds: WaitSeconds = 0,
) -> SandboxStarted:
    """Start an MCP server (a start command or a package) in a sandbox on a runtime. Answers at
    once with the sandbox (state `starting`) unless `wait_seconds` is given: then it first waits, at
    most that long, for the server to come up and answers its tools too."""
    # The REST body, so the payload is made and checked one way (a test keeps the schemas alike).
    try:
        request = SandboxRequest(start_command=start_command, package=package, runtime=runtime, transport=transport,
                                 env=env, ttl_seconds=ttl_seconds, labels=labels, wait=wait)
    except ValidationError as invalid:  # what runs, as a whole: one of command and package, a runnable one
        raise Unprocessable("invalid sandbox: " + "; ".join(error["msg"] for error in invalid.errors())) from invalid
    caller = caller_of(ctx)
    sandboxes = composition.services().sandboxes
    job = await to_thread.run_sync(lambda: sandboxes.create(caller, request.payload(), request.ttl_seconds,
                                                            wait=request.wait))
    tools = None
    if wait_seconds:
        from app.services.sandboxes import tools_reported_at_start  # loaded with the service, when one is used

        tools = tools_reported_at_start(await sandboxes.wait_until_started(caller, job.job_id, wait_seconds))
    sandbox = await to_thread.run_sync(lambda: SandboxView.of(sandboxes.sandbox(sandboxes.get(caller, job.job_id))))
    return SandboxStarted(sandbox=sandbox, tools=tools, next=_next_step(sandbox))


def _next_step(sandbox: SandboxView) -> str:
    if sandbox.state == "running":
        return f"call its tools with call_sandbox_tool (sandbox_id {sandbox.id})"
    if sandbox.state == "starting":
        return (f"its server is starting: poll list_sandboxes, or call call_sandbox_tool with sandbox_id "
                f"{sandbox.id} and wait_seconds")
    return f"its server is {sandbox.state}{': ' + sandbox.error if sandbox.error else ''}"


def sandbox_action(ctx: Context, sandbox_id: SandboxId,
                   action: Literal["start", "stop", "restart", "delete"]) -> ActionResponse:
    """Start, stop or restart a sandbox's server (the sandbox lives on), or delete the sandbox."""
    sandboxes, caller = composition.services().sandboxes, caller_of(ctx)
    if action == "delete":
        state = sandboxes.delete(caller, sandbox_id).value
    else:
        state = sandboxes.act(caller, sandbox_id, action)
    return ActionResponse(id=sandbox_id, action=action, state=state)


async def call_sandbox_tool(
    ctx: Context,
    sandbox_id: SandboxId,
    name: Annotated[str, Field(min_length=1, max_length=200, description="the tool's name, as its server lists it")],
    arguments: Annotated[dict[str, Any], Field(description="the tool's arguments")] = {},  # noqa: B006
    wait_seconds: WaitSeconds = 0,
) -> ToolCallResponse:
    """Call a tool of the MCP server in a sandbox. `ok` is false when the tool itself failed (its
    answer says why). With `wait_seconds`, a server still starting is waited for first."""
    caller = caller_of(ctx)
    sandboxes = composition.services().sandboxes
    if wait_seconds:
        await sandboxes.wait_until_started(caller, sandbox_id, wait_seconds)
    answer = await to_thread.run_sync(lambda: sandboxes.call_tool(caller, sandbox_id, name, arguments))
    return ToolCallResponse(**answer)


def tools() -> list[TieredTool]:
    return [
        tool(create_sandbox, tier=Tier.standard,
             annotations=changes("Create a sandbox", destructive=False, idempotent=False)),
        tool(list_sandboxes, tier=Tier.read, annotations=reads("List sandboxes")),
        tool(sandbox_action, tier=Tier.admin,
             annotations=changes("Start, stop, restart or delete a sandbox", destructive=True, idempotent=False)),
        # A sandboxed server's tool may do anything its server does: berth cannot promise less.
        tool(call_sandbox_tool, tier=Tier.standard,
             annotations=changes("Call a sandbox's tool", destructive=True, idempotent=False)),
    ]
