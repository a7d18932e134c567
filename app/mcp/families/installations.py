"""Installations: marketplace entries installed for the workspace, or for one user when the entry
is per-user, and the tools of their servers (`/api/marketplace/tools/:id/install`,
`/api/installations`).

A per-user entry is installed for, and called as, the user the REST routes would act for
(`acting_user`: the signed-in user, else the user `X-User-Id` names, else the key's own). A
package installation's server starts on its first tool call and stops when idle; that call waits
for it as `POST /api/installations/:id/tools/call` does (briefly: a server still starting after
that is a tool error saying so, and calling again finds it further along).
"""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from app import composition
from app.auth.principal import Tier
from app.errors import BadGateway, GatewayTimeout
from app.mcp.families import EntryId, InstallationId
from app.mcp.tools import TieredTool, caller_of, changes, named_user_of, reads, tool
from app.schemas.installations import InstallationList, InstallationView
from app.schemas.sandboxes import ToolCallResponse
from app.services.installations import acting_user


class Installed(BaseModel):
    installation: InstallationView
    next: str = Field(description="what to do next")


def list_installations(
    ctx: Context,
    user_id: Annotated[str | None, Field(max_length=200, description="only this user's per-user installations "
                                                                     "(besides the workspace's)")] = None,
    limit: Annotated[int, Field(ge=1, le=200, description="at most this many")] = 50,
    cursor: Annotated[str | None, Field(max_length=2000, description="`next_cursor` of the previous page")] = None,
) -> InstallationList:
    """The workspace's installations, newest first: per-user ones of every user too, each with its
    state (ready, or waiting for its user's OAuth sign-in), values that are not secret, hints of
    the secret ones (never the values), and the sandbox serving it while one does."""
    page = composition.services().installations.page(caller_of(ctx), limit=limit, cursor=cursor, user_id=user_id)
    return InstallationList(installations=[InstallationView.of(found) for found in page.items],
                            next_cursor=page.cursor)


def install_tool(
    ctx: Context,
    entry_id: EntryId,
    config: Annotated[dict[str, str], Field(max_length=200, description=(
        "values by input name, as get_tool_details lists the entry's inputs; secret ones are sealed, never shown "
        "again"))] = {},  # noqa: B006
    kind: Annotated[Literal["package", "remote"] | None, Field(description=(
        "insist on a package or a remote when the entry offers both (default: its package)"))] = None,
) -> Installed:
    """Install a marketplace entry with its configuration (checked against what the entry
    declares): for the workspace, or for the user acted for when the entry is per-user. Its server
    starts on the first call of one of its tools."""
    caller = caller_of(ctx)
    installation = composition.services().installations.install(
        caller, entry_id, dict(config), kind=kind, user_id=acting_user(caller, named_user_of(ctx)))
    view = InstallationView.of(installation)
    return Installed(installation=view, next=_next_step(view))


def _next_step(view: InstallationView) -> str:
    if view.state == "needs_oauth":
        return view.next  # the user signs in first, whatever the kind
    if view.kind == "remote":
        return f"call its tools with call_installed_tool (installation_id {view.id}): berth calls the remote server"
    return (f"call its tools with call_installed_tool (installation_id {view.id}): the first call starts its server, "
            "installing its package, which can take a while; call again while it says the server is starting")


async def call_installed_tool(
    ctx: Context,
    installation_id: InstallationId,
    name: Annotated[str, Field(min_length=1, max_length=200, description="the tool's name, as its server lists it")],
    arguments: Annotated[dict[str, Any], Field(description="the tool's arguments")] = {},  # noqa: B006
) -> ToolCallResponse:
    """Call a tool of an installation's MCP server, starting the server first if none runs and
    waiting for it briefly (a server still starting then is a tool error: call again). `ok` is
    false when the tool itself failed (its answer says why)."""
    caller, installations = caller_of(ctx), composition.services().installations
    try:
        # The service moves its own blocking reads to threads, as the REST route relies on.
        answer = await installations.call(caller, installation_id, acting_user(caller, named_user_of(ctx)), name,
                                          arguments)
    except (BadGateway, GatewayTimeout) as failed:
        # A server that did not start (in the runtime's words), a remote that refused, a call that
        # took too long: about the server installed, and what the REST route answers in words too.
        raise ToolError(failed.message) from failed
    return ToolCallResponse(ok=answer["ok"], result=answer.get("result", {}))


def tools() -> list[TieredTool]:
    return [
        tool(list_installations, tier=Tier.read, annotations=reads("List installations")),
        tool(install_tool, tier=Tier.standard,
             annotations=changes("Install a marketplace entry", destructive=False, idempotent=False)),
        # An installed server's tool may do anything its server does: berth cannot promise less.
        tool(call_installed_tool, tier=Tier.standard,
             annotations=changes("Call an installed server's tool", destructive=True, idempotent=False)),
    ]
