"""Recording who did what (audit) and how much was used (usage metering)."""

from typing import Any

from app.clock import Clock, day
from app.domain.activity import (
    AUDIT_RETENTION_SECONDS,
    USAGE_RETENTION_SECONDS,
    AuditRecord,
    UsageCount,
    UsageReport,
    usage_report,
)
from app.ids import new_id
from app.logs import get_logger, log_event, request_id_var
from app.store import Store
from app.store.table import Page, Write

logger = get_logger("berth.audit")


class ActivityLog:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def _entry(self, workspace_id: str, action: str, actor: str, target: str, outcome: str,
               detail: dict[str, Any] | None) -> AuditRecord:
        at = self.clock.now()
        return AuditRecord(audit_id=new_id("aud"), workspace_id=workspace_id, action=action, actor=actor, target=target,
                           outcome=outcome, detail=detail or {}, at=self.clock.iso(at),
                           request_id=request_id_var.get(), expires_epoch=int(at) + AUDIT_RETENTION_SECONDS)

    def audit(self, workspace_id: str, action: str, *, actor: str, target: str = "", outcome: str = "ok",
              detail: dict[str, Any] | None = None) -> None:
        self.store.activity.add_audit(self._entry(workspace_id, action, actor, target, outcome, detail))
        self.logged(action, actor, target, outcome)

    def audit_write(self, workspace_id: str, action: str, *, actor: str, target: str = "", outcome: str = "ok",
                    detail: dict[str, Any] | None = None) -> Write:
        """The audit record as part of the transaction that does the action; `logged` once it commits."""
        return self.store.activity.audit(self._entry(workspace_id, action, actor, target, outcome, detail))

    @staticmethod
    def logged(action: str, actor: str, target: str = "", outcome: str = "ok") -> None:
        log_event(logger, "audit", action=action, actor=actor, target=target, outcome=outcome)

    def _count(self, workspace_id: str, kind: str, subkind: str, amount: float) -> UsageCount:
        now = self.clock.now()
        return UsageCount(workspace_id=workspace_id, day=day(now), kind=kind, subkind=subkind, amount=amount,
                          expires_epoch=int(now) + USAGE_RETENTION_SECONDS)

    def meter(self, workspace_id: str, kind: str, subkind: str, amount: float = 1) -> None:
        self.store.activity.add_usage(self._count(workspace_id, kind, subkind, amount))

    def meter_write(self, workspace_id: str, kind: str, subkind: str, amount: float = 1) -> Write:
        return self.store.activity.usage(self._count(workspace_id, kind, subkind, amount))

    def audit_page(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page[AuditRecord]:
        return self.store.activity.audit_page(workspace_id, limit=limit, cursor=cursor)

    def usage(self, workspace_id: str, days: int = 30) -> UsageReport:
        first_day = day(self.clock.now() - (days - 1) * 86400)
        return usage_report(self.store.activity.usage_since(workspace_id, first_day), since=first_day, days=days)
