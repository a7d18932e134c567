"""`/api/integrations`: MCP client configuration for berth's `/mcp`, per named instance of an
integrating product, and the syncs instances report. `/api/integrations/client?instanceId=` is
canonical; a named alias (`/api/integrations/tessaract`) is a line of configuration
(`BERTH_INTEGRATION_ALIASES`), answered by the same two routes below."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.domain.integrations import DEFAULT_INSTANCE, INSTANCE_ID_PATTERN
from app.schemas.integrations import ClientConfig, LastSync, SyncRecorded, SyncRequest
from app.web.deps import ServicesDep, User
from app.web.openapi import errors

router = APIRouter(prefix="/api/integrations", tags=["integrations"])
InstanceId = Annotated[str, Query(alias="instanceId", pattern=INSTANCE_ID_PATTERN,
                                  description="the integrating product's instance")]
Alias = Annotated[str, Path(pattern=INSTANCE_ID_PATTERN, description="a configured alias of an instance")]


@router.get("/client", response_model=ClientConfig, response_model_by_alias=True, responses=errors(401, 403, 422))
def client_config(principal: User, services: ServicesDep, instance_id: InstanceId = DEFAULT_INSTANCE) -> ClientConfig:
    """The MCP client configuration for berth's `/mcp`: an `mcpServers` map, VS Code's `servers`,
    and the plain URL and header; with the instance's last sync."""
    integrations = services.integrations
    return ClientConfig.of(instance_id, integrations.mcp_url, integrations.last_sync(principal, instance_id))


@router.post("/client/sync", response_model=SyncRecorded, responses=errors(401, 403, 422))
def client_sync(principal: User, services: ServicesDep, instance_id: InstanceId = DEFAULT_INSTANCE,
                body: SyncRequest | None = None) -> SyncRecorded:
    """Record that the instance synced its MCP configuration (audited)."""
    synced = services.integrations.record_sync(principal, instance_id, body.client if body else None)
    return SyncRecorded(instance_id=instance_id, last_sync=LastSync(at=synced.last_sync_at, syncs=synced.syncs,
                                                                    client=synced.client))


@router.get("/{alias}", response_model=ClientConfig, response_model_by_alias=True,
            responses=errors(401, 403, 404, 422))
def aliased_config(principal: User, alias: Alias, services: ServicesDep) -> ClientConfig:
    """`client?instanceId=` for the instance a configured alias names."""
    return client_config(principal, services, services.integrations.aliased(alias))


@router.post("/{alias}/sync", response_model=SyncRecorded, responses=errors(401, 403, 404, 422))
def aliased_sync(principal: User, alias: Alias, services: ServicesDep, body: SyncRequest | None = None
                 ) -> SyncRecorded:
    """`client/sync?instanceId=` for the instance a configured alias names."""
    return client_sync(principal, services, services.integrations.aliased(alias), body)
