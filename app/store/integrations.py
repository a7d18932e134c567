"""Integration syncs, one item per instance in the workspace's partition."""

from app.domain.integrations import IntegrationSync
from app.store import keys
from app.store.records import record
from app.store.table import Table, Write


class Integrations:
    def __init__(self, table: Table):
        self.table = table

    def sync(self, workspace_id: str, instance_id: str) -> IntegrationSync | None:
        item = self.table.get(*keys.integration(workspace_id, instance_id))
        return record(IntegrationSync, item) if item else None

    def record_sync(self, workspace_id: str, instance_id: str, *, at: str, actor: str, client: str | None) -> Write:
        """Count one more sync and remember this one (create-or-add: two syncs at once both count)."""
        fields = {"workspace_id": workspace_id, "instance_id": instance_id, "last_sync_at": at, "last_actor": actor}
        if client:
            fields["client"] = client
        return Write.increment(*keys.integration(workspace_id, instance_id), add={"syncs": 1}, set=fields)
