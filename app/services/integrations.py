"""Integrations: how an MCP client reaches berth's `/mcp` for a named instance of an integrating
product, and the syncs the instances report (audited). Named aliases of instances
(`/api/integrations/tessaract`) are configuration, `BERTH_INTEGRATION_ALIASES`, not routes."""

from app.auth.principal import Principal
from app.clock import Clock
from app.domain.integrations import IntegrationSync
from app.errors import NotFound
from app.services.activity import ActivityLog
from app.settings import Settings
from app.store import Store

MCP_PATH = "/mcp"


class IntegrationService:
    def __init__(self, store: Store, settings: Settings, activity: ActivityLog, clock: Clock):
        self.store = store
        self.settings = settings
        self.activity = activity
        self.clock = clock

    @property
    def mcp_url(self) -> str:
        return self.settings.base_url + MCP_PATH

    def aliased(self, alias: str) -> str:
        """The instance an alias names."""
        instance_id = self.settings.integration_aliases.get(alias)
        if instance_id is None:
            known = ", ".join(sorted(self.settings.integration_aliases)) or "none"
            raise NotFound(f"no integration {alias} (aliases configured: {known}); use "
                           "/api/integrations/client?instanceId=...")
        return instance_id

    def last_sync(self, principal: Principal, instance_id: str) -> IntegrationSync | None:
        return self.store.integrations.sync(principal.workspace_id, instance_id)

    def record_sync(self, principal: Principal, instance_id: str, client: str | None) -> IntegrationSync:
        at = self.clock.iso()
        audit = self.activity.audit_write(principal.workspace_id, "integration.sync", actor=principal.subject_id,
                                          target=instance_id, detail={"client": client} if client else None)
        self.store.table.transact([self.store.integrations.record_sync(
            principal.workspace_id, instance_id, at=at, actor=principal.subject_id, client=client), audit])
        self.activity.logged("integration.sync", principal.subject_id, instance_id)
        synced = self.store.integrations.sync(principal.workspace_id, instance_id)
        assert synced is not None  # just written
        return synced
