"""Shared tools: tools that act for each user with that user's own OAuth grant (`/api/shared-tools`)."""

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from app import composition
from app.auth.principal import Tier
from app.mcp.tools import TieredTool, acting_user_of, caller_of, reads, tool
from app.schemas.shared_tools import SharedToolView


class SharedTools(BaseModel):
    user_id: str = Field(description="whose connections these are (X-User-Id, else the key's own user)")
    shared_tools: list[SharedToolView]
    connect: str = Field(description="how a user connects one")


def list_shared_tools(ctx: Context) -> SharedTools:
    """The shared tools (each user connects their own account, with OAuth) and whether the user
    has connected each: expired or not, the scopes granted, and when."""
    services, user_id = composition.services(), acting_user_of(ctx)
    now = services.clock.now()
    found = services.shared_tools.connections(caller_of(ctx), user_id)
    return SharedTools(user_id=user_id, shared_tools=[
        SharedToolView.of(each.tool.document, each.tool.oauth, each.client, each.grant, now) for each in found],
        connect="the user opens the authorization_url of POST /api/shared-tools/{id}/oauth/state (or runs "
                "`berth shared-tools connect ID`)")


def tools() -> list[TieredTool]:
    return [tool(list_shared_tools, tier=Tier.read, annotations=reads("List shared tools"))]
