"""The rules every tool on berth's `/mcp` follows, enforced where the tool is made.

- A tool needs a tier (`read`, `standard`, `admin`). `tools/list` shows a caller only the tools
  its key's tier allows; calling one above it is a tool error that names the tier it needs.
- A tool states all three behaviour hints (`readOnlyHint`, `destructiveHint`, `idempotentHint`);
  the spec's defaults (destructive, not idempotent) are never left to stand in for a decision.
- A tool returns a typed result, so it has an `outputSchema` and answers `structuredContent`.
- A user's mistake is a tool error (`isError: true`) with a clear message, never a protocol error:
  arguments that fail the input schema (the SDK does this), a `ToolError` the tool raises, and any
  BerthError under 500 that the services raise (not found, conflict, forbidden, ...). Anything
  else is a crash: the caller sees only "Error executing tool NAME" and the server logs it.
"""

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations

from app.auth.principal import Principal, Tier
from app.errors import BerthError
from app.mcp.caller import caller_in, refusal


def caller_of(ctx: Context[Any, Any]) -> Principal:
    """The caller of the tool call `ctx` belongs to (a tool declares a `ctx: Context` parameter)."""
    return caller_in(ctx.request_context.request)


def named_user_of(ctx: Context[Any, Any]) -> str | None:
    """The user the tool call's `X-User-Id` header names, if it names one."""
    request = ctx.request_context.request
    return request.headers.get("x-user-id") if request is not None else None


def acting_user_of(ctx: Context[Any, Any]) -> str:
    """The user a tool call acts for: the caller's own, or the one its `X-User-Id` header names
    (`Principal.acting_for`, the REST routes' rule)."""
    return caller_of(ctx).acting_for(named_user_of(ctx))


class TieredTool(Tool):
    """A tool with the tier it needs, refusing callers below it before anything else runs."""

    tier: Tier

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        refused = refusal(caller_of(context), self.tier)
        if refused is not None:
            raise ToolError(f"Error executing tool {self.name}: {refused}")
        try:
            return await super().run(arguments, context, convert_result=convert_result)
        except UnexpectedToolError as crash:
            cause = crash.__cause__
            if isinstance(cause, BerthError) and cause.status < 500:
                raise ToolError(f"Error executing tool {self.name}: {cause.message}") from cause
            raise


def tool(
    fn: Callable[..., Any],
    *,
    tier: Tier,
    annotations: ToolAnnotations,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
) -> TieredTool:
    """Make a berth tool from a function whose parameters and return type give its schemas."""
    hints = (annotations.read_only_hint, annotations.destructive_hint, annotations.idempotent_hint)
    if None in hints:
        raise ValueError(f"tool {name or fn.__name__}: state readOnlyHint, destructiveHint and idempotentHint")
    if annotations.read_only_hint and annotations.destructive_hint:
        raise ValueError(f"tool {name or fn.__name__}: a read-only tool cannot be destructive")
    # structured_output=True: the SDK refuses a function without a return annotation.
    made = Tool.from_function(
        fn, name=name, title=title, description=description or _described(fn), annotations=annotations,
        structured_output=True,
    )
    return TieredTool(tier=tier, **{field: getattr(made, field) for field in Tool.model_fields})


def _described(fn: Callable[..., Any]) -> str:
    """A docstring as one line of prose (the SDK would send its indentation along)."""
    return " ".join(inspect.cleandoc(fn.__doc__ or "").split())


def reads(title: str) -> ToolAnnotations:
    """Hints for a tool that only looks: safe to call again, changes nothing."""
    return ToolAnnotations(title=title, read_only_hint=True, destructive_hint=False, idempotent_hint=True)


def changes(title: str, *, destructive: bool, idempotent: bool) -> ToolAnnotations:
    """Hints for a tool that changes state; whether it destroys and whether a repeat is harmless."""
    return ToolAnnotations(title=title, read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent)


class TierGate:
    """Server middleware: `tools/list` shows the caller only the tools its tier may call.

    Calls are refused by the tool itself (`TieredTool.run`), so a refusal travels the SDK's
    ordinary tool-error path; listing has no per-tool hook, so it is filtered here, on the
    finished result, which keeps the SDK's envelope as it was.
    """

    def __init__(self, tiers: Mapping[str, Tier]):
        self._tiers = dict(tiers)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list" or not isinstance(result, dict):
            return result
        caller = caller_in(ctx.request)
        listed = [entry for entry in result.get("tools", []) if self._visible(caller, entry.get("name"))]
        return {**result, "tools": listed}

    def _visible(self, caller: Principal, name: Any) -> bool:
        needed = self._tiers.get(name)
        return needed is not None and refusal(caller, needed) is None


def build_server(
    name: str, version: str, tools: Sequence[TieredTool], *, instructions: str | None = None
) -> MCPServer:
    """An MCPServer serving `tools` under the tier gate, ready for `StatelessMCPEndpoint`."""
    tiers = {made.name: made.tier for made in tools}
    if len(tiers) != len(tools):
        raise ValueError("two tools share a name")
    return MCPServer(
        name,
        version=version,
        instructions=instructions,
        tools=list(tools),
        middleware=[TierGate(tiers)],
        # The SDK installs a root log handler at this level when the process has none yet; berth
        # configures its own before, and a bare process (a benchmark) should stay quiet.
        log_level="WARNING",
    )
