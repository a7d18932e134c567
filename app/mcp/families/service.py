"""The service itself: who answers, who is asking, and (on request) the control API's `/status`."""

from typing import Annotated, Any, Literal

from anyio import to_thread
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from app import __version__, composition
from app.auth.principal import Tier
from app.mcp.tools import TieredTool, caller_of, reads, tool


class Service(BaseModel):
    name: Literal["berth"] = "berth"
    version: str
    mode: Literal["local", "aws"]
    status: Literal["ok"] = "ok"


class Caller(BaseModel):
    workspace_id: str
    kind: str = Field(description="api_key or session")
    tier: Tier = Field(description="what the key may do: read, standard or admin")
    user_id: str = Field(description="the key's own user (tools acting for a user take X-User-Id over it)")


class ServiceStatus(BaseModel):
    service: Service
    caller: Caller
    checks: dict[str, Any] | None = Field(
        description="with include_checks: table, queues, KMS key, storage and sandbox driver, as GET /status")


async def service_status(
    ctx: Context,
    include_checks: Annotated[bool, Field(description="also check the table, queues, key, storage and runtimes "
                                                      "(slower: several calls)")] = False,
) -> ServiceStatus:
    """berth's version and mode, and who is calling (workspace, key tier); with include_checks,
    the health of what it depends on."""
    services, caller = composition.services(), caller_of(ctx)
    checks = await to_thread.run_sync(services.system.status_report) if include_checks else None
    return ServiceStatus(service=Service(version=__version__, mode=services.settings.mode),
                         caller=Caller(workspace_id=caller.workspace_id, kind=caller.kind, tier=caller.tier,
                                       user_id=caller.user_id),
                         checks=checks)


def tools() -> list[TieredTool]:
    return [tool(service_status, tier=Tier.read, annotations=reads("Service status"))]
