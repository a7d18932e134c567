"""The 13 infra SSH tools of berth's `/mcp` (admin tier only), calling the same services as the
`/api/infra/ssh/*` routes, so they check, refuse and audit exactly as the routes do.

An agent acts for a person: it sends `X-User-Id` with its admin key, as on the REST surface. It can
*request* an approval lease (`infra_ssh_request_lease`); a person approves it, signed in
(`POST /api/infra/ssh/admin-session/approve`), which no tool can do. A refusal is a tool error
whose message starts with its kind (`approval_required: ...`, `denied: ...`,
`validation_failed: ...`, after the SDK's "Error executing tool NAME: "), so an agent can tell
asking a person from fixing its arguments.

`tools()` is what the `/mcp` server registers (beside the other families' `tools()`).
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from anyio import to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from app import composition
from app.auth.principal import Tier
from app.contract.ssh.actions import SshAction
from app.errors import BerthError
from app.mcp.tools import TieredTool, caller_of, changes, reads, tool
from app.schemas.infra_ssh import (
    MAX_WAIT_SECONDS,
    ActionList,
    ForwardList,
    ForwardView,
    HostList,
    HostView,
    LeaseAnswer,
    RunList,
    RunView,
)
from app.services.ssh_caller import SshCaller
from app.services.ssh_operations import allowed_on

Result = TypeVar("Result")
NameArg = Annotated[str, Field(min_length=1, max_length=253, description="as the inventory names it")]
Wait = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for it to finish (or open)")]
Limit = Annotated[int, Field(ge=1, le=200)]
Cursor = Annotated[str | None, Field(max_length=2000, description="next_cursor of the previous page")]


def _caller(ctx: Context[Any, Any]) -> SshCaller:
    request = ctx.request_context.request
    headers = getattr(request, "headers", {})
    return SshCaller.of(caller_of(ctx), headers.get("x-user-id"))


async def _call(work: Callable[[], Result]) -> Result:
    """`work` in a worker thread (services block on AWS calls); a refusal becomes a tool error that
    starts with its kind."""
    try:
        return await to_thread.run_sync(work)
    except BerthError as refused:
        raise ToolError(f"{refused.kind}: {refused.message}" if refused.kind else refused.message) from refused


async def infra_ssh_list_hosts(ctx: Context) -> HostList:
    """The audited SSH host inventory: each host's address, user, labels, pinned host key fingerprint,
    where its client key is kept (never the key) and the actions and forwards allowed on it."""
    caller, services = _caller(ctx), composition.services()

    def listing() -> HostList:
        inventory = services.ssh_operations.inventory(caller)
        return HostList(hosts=[HostView.of(host, *allowed_on(inventory, host)) for host in inventory.hosts])

    return await _call(listing)


async def infra_ssh_get_host(ctx: Context, name: NameArg) -> HostView:
    """One host of the inventory, with the actions and forwards allowed on it."""
    caller, operations = _caller(ctx), composition.services().ssh_operations

    def found() -> HostView:
        host = operations.host(caller, name)
        return HostView.of(host, *allowed_on(operations.inventory(caller), host))

    return await _call(found)


async def infra_ssh_list_actions(ctx: Context) -> ActionList:
    """The named actions: command template, typed parameters, hosts or labels, timeout, output cap."""
    caller, operations = _caller(ctx), composition.services().ssh_operations
    return await _call(lambda: ActionList(actions=operations.inventory(caller).actions))


async def infra_ssh_describe_action(ctx: Context, name: NameArg) -> SshAction:
    """One action in full: what each parameter accepts (enum values, integer range, pattern)."""
    caller, operations = _caller(ctx), composition.services().ssh_operations
    return await _call(lambda: operations.action(caller, name))


async def infra_ssh_lease_status(ctx: Context) -> LeaseAnswer:
    """The approval lease: pending (waiting for a person), active (and its time left), or over."""
    caller, services = _caller(ctx), composition.services()
    return await _call(lambda: LeaseAnswer.of(services.ssh_leases.current(caller), services.clock.now()))


async def infra_ssh_request_lease(
    ctx: Context,
    reason: Annotated[str, Field(min_length=1, max_length=1000, description="why; kept in the audit record")],
    ttl_seconds: Annotated[int, Field(ge=10, le=86400, description="how long it lasts once approved")],
) -> LeaseAnswer:
    """Ask for an approval lease. Nothing runs until a person approves it, signed in to berth
    (an API key cannot approve); tell them the lease id. A signed-in caller's lease starts at once."""
    caller, services = _caller(ctx), composition.services()
    return await _call(lambda: LeaseAnswer.of(services.ssh_leases.request(caller, reason, ttl_seconds),
                                              services.clock.now()))


async def infra_ssh_end_lease(ctx: Context) -> LeaseAnswer:
    """End the lease (or withdraw a request): every run and forward still open under it stops."""
    caller, services = _caller(ctx), composition.services()

    def ended() -> LeaseAnswer:
        lease, stopped = services.ssh_leases.end(caller)
        return LeaseAnswer.of(lease, services.clock.now(), stopped)

    return await _call(ended)


async def infra_ssh_run_action(
    ctx: Context,
    action: NameArg,
    host: NameArg,
    parameters: Annotated[dict[str, Any], Field(description="the action's parameters by name (see "
                                                            "infra_ssh_describe_action)")] = {},  # noqa: B006
    wait_seconds: Wait = 10.0,
) -> RunView:
    """Run a named action on a host while an approved lease is active. Waits up to `wait_seconds`
    for the result (exit status, output, digests); a run still going has no outcome yet: follow it
    with infra_ssh_get_run."""
    caller, operations = _caller(ctx), composition.services().ssh_operations
    job = await _call(lambda: operations.start_run(caller, action, host, dict(parameters)))
    job = await operations.wait_for_end(job, wait_seconds)
    return await _call(lambda: RunView.of(job, operations.outcome(job)))


async def infra_ssh_get_run(ctx: Context, run_id: Annotated[str, Field(min_length=1, max_length=100)]) -> RunView:
    """A run as it stands: its outcome and result once it ended."""
    caller, operations = _caller(ctx), composition.services().ssh_operations

    def found() -> RunView:
        job = operations.run(caller, run_id)
        return RunView.of(job, operations.outcome(job))

    return await _call(found)


async def infra_ssh_list_runs(ctx: Context, limit: Limit = 20, cursor: Cursor = None) -> RunList:
    """Runs, newest first."""
    caller, operations = _caller(ctx), composition.services().ssh_operations

    def listing() -> RunList:
        page = operations.runs(caller, limit=limit, cursor=cursor)
        return RunList(runs=[RunView.of(job, operations.outcome(job)) for job in page.items], next_cursor=page.cursor)

    return await _call(listing)


def _forward_view(job: Any) -> ForwardView:
    services = composition.services()
    return ForwardView.of(job, services.ssh_forwards.opened(job), services.ssh_operations.outcome(job))


async def infra_ssh_open_forward(
    ctx: Context,
    forward: NameArg,
    host: NameArg,
    ttl_seconds: Annotated[int | None, Field(ge=10, le=86400, description="default: the forward's longest")] = None,
    wait_seconds: Wait = 10.0,
) -> ForwardView:
    """Open an allowed port forward (e.g. to a dashboard) while an approved lease is active; reach it
    over HTTP at `proxy_url` on berth with your key. It closes when closed, at its TTL, or when the
    lease ends."""
    caller, services = _caller(ctx), composition.services()
    forwards = services.ssh_forwards
    job = await _call(lambda: forwards.open(caller, forward, host, ttl_seconds))
    job = await services.ssh_operations.wait_until(job, wait_seconds, lambda now: forwards.opened(now) is not None)
    return await _call(lambda: _forward_view(job))


async def infra_ssh_list_forwards(ctx: Context, limit: Limit = 20, cursor: Cursor = None) -> ForwardList:
    """Forwards, newest first: open, opening, closed or failed."""
    caller, forwards = _caller(ctx), composition.services().ssh_forwards

    def listing() -> ForwardList:
        page = forwards.page(caller, limit=limit, cursor=cursor)
        return ForwardList(forwards=[_forward_view(job) for job in page.items], next_cursor=page.cursor)

    return await _call(listing)


async def infra_ssh_close_forward(ctx: Context,
                                  forward_id: Annotated[str, Field(min_length=1, max_length=100)]) -> ForwardView:
    """Close a forward; closing one already closed changes nothing."""
    caller, forwards = _caller(ctx), composition.services().ssh_forwards
    return await _call(lambda: _forward_view(forwards.close(caller, forward_id)))


def tools() -> list[TieredTool]:
    """The 13 tools, each admin-only, with hints that say what it does to the world."""
    admin = Tier.admin
    return [
        tool(infra_ssh_list_hosts, tier=admin, annotations=reads("List SSH hosts")),
        tool(infra_ssh_get_host, tier=admin, annotations=reads("Get an SSH host")),
        tool(infra_ssh_list_actions, tier=admin, annotations=reads("List SSH actions")),
        tool(infra_ssh_describe_action, tier=admin, annotations=reads("Describe an SSH action")),
        tool(infra_ssh_lease_status, tier=admin, annotations=reads("SSH approval lease status")),
        tool(infra_ssh_request_lease, tier=admin,
             annotations=changes("Request an SSH approval lease", destructive=False, idempotent=False)),
        tool(infra_ssh_end_lease, tier=admin,
             annotations=changes("End the SSH approval lease", destructive=True, idempotent=True)),
        tool(infra_ssh_run_action, tier=admin,
             annotations=changes("Run an SSH action", destructive=True, idempotent=False)),
        tool(infra_ssh_get_run, tier=admin, annotations=reads("Get an SSH run")),
        tool(infra_ssh_list_runs, tier=admin, annotations=reads("List SSH runs")),
        tool(infra_ssh_open_forward, tier=admin,
             annotations=changes("Open an SSH port forward", destructive=False, idempotent=False)),
        tool(infra_ssh_list_forwards, tier=admin, annotations=reads("List SSH port forwards")),
        tool(infra_ssh_close_forward, tier=admin,
             annotations=changes("Close an SSH port forward", destructive=True, idempotent=True)),
    ]
