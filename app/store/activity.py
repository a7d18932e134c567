"""Audit records and usage counters, both kept per workspace.

Audit items sort by time-ordered id and expire after the retention period; usage is one counter
item per (day, kind, subkind), incremented atomically with ADD so concurrent writers never lose
a count.
"""

from app.clock import day
from app.store.accounts import workspace_pk
from app.store.table import Page, Table, Write

AUDIT_RETENTION_SECONDS = 90 * 24 * 3600
USAGE_RETENTION_SECONDS = 400 * 24 * 3600


class Activity:
    def __init__(self, table: Table):
        self.table = table

    def audit_item(self, workspace_id: str, audit_id: str, created_epoch: float, **fields) -> dict:
        return {
            "pk": workspace_pk(workspace_id),
            "sk": f"AUDIT#{audit_id}",
            "audit_id": audit_id,
            "expires_epoch": int(created_epoch) + AUDIT_RETENTION_SECONDS,
            **fields,
        }

    def add_audit(self, item: dict) -> None:
        self.table.put(item)

    def audit_write(self, item: dict) -> Write:
        return Write.put(item)

    def list_audit(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page:
        return self.table.query(workspace_pk(workspace_id), prefix="AUDIT#", newest_first=True, limit=limit,
                                cursor=cursor)

    def add_usage(self, workspace_id: str, kind: str, subkind: str, amount: float, at_epoch: float) -> None:
        self.table.increment(*self._usage_key(workspace_id, kind, subkind, at_epoch), add={"amount": amount},
                             set=self._usage_fields(kind, subkind, at_epoch))

    def usage_write(self, workspace_id: str, kind: str, subkind: str, amount: float, at_epoch: float) -> Write:
        return Write.increment(*self._usage_key(workspace_id, kind, subkind, at_epoch), add={"amount": amount},
                               set=self._usage_fields(kind, subkind, at_epoch))

    @staticmethod
    def _usage_key(workspace_id: str, kind: str, subkind: str, at_epoch: float) -> tuple[str, str]:
        return workspace_pk(workspace_id), f"USAGE#{day(at_epoch)}#{kind}#{subkind}"

    @staticmethod
    def _usage_fields(kind: str, subkind: str, at_epoch: float) -> dict:
        return {"kind": kind, "subkind": subkind, "day": day(at_epoch),
                "expires_epoch": int(at_epoch) + USAGE_RETENTION_SECONDS}

    def usage_since(self, workspace_id: str, first_day: str) -> list[dict]:
        return self.table.query(workspace_pk(workspace_id), between=(f"USAGE#{first_day}", "USAGE#~")).items
