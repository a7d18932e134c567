"""Audit records and usage counters, both kept per workspace.

Audit items sort by time-ordered id; usage is one counter item per (day, kind, subkind),
incremented atomically with ADD so concurrent writers never lose a count.
"""

from app.domain.activity import AuditRecord, UsageCount
from app.store import keys
from app.store.records import attributes, record
from app.store.table import Page, Table, Write


class Activity:
    def __init__(self, table: Table):
        self.table = table

    def add_audit(self, entry: AuditRecord) -> None:
        self.table.put(self._audit_item(entry))

    def audit(self, entry: AuditRecord) -> Write:
        return Write.put(self._audit_item(entry))

    def audit_page(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page[AuditRecord]:
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.AUDIT, newest_first=True, limit=limit,
                                cursor=cursor)
        return page.map(lambda item: record(AuditRecord, item, workspace_id=workspace_id))

    def add_usage(self, count: UsageCount) -> None:
        self.table.increment(*keys.usage(count.workspace_id, count.day, count.kind, count.subkind),
                             add={"amount": count.amount}, set=self._usage_fields(count))

    def usage(self, count: UsageCount) -> Write:
        return Write.increment(*keys.usage(count.workspace_id, count.day, count.kind, count.subkind),
                               add={"amount": count.amount}, set=self._usage_fields(count))

    def usage_since(self, workspace_id: str, first_day: str) -> list[UsageCount]:
        items = self.table.query(keys.workspace_pk(workspace_id), between=keys.usage_since(first_day)).items
        return [record(UsageCount, item, workspace_id=workspace_id) for item in items]

    @staticmethod
    def _audit_item(entry: AuditRecord) -> dict:
        pk, sk = keys.audit(entry.workspace_id, entry.audit_id)
        return {"pk": pk, "sk": sk, **attributes(entry, skip=("workspace_id",))}

    @staticmethod
    def _usage_fields(count: UsageCount) -> dict:
        return attributes(count, skip=("workspace_id", "amount"))
