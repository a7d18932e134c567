"""Audit records (who did what) and usage counts (how much was used, per day)."""

from dataclasses import dataclass, field
from typing import Any

AUDIT_RETENTION_SECONDS = 90 * 24 * 3600
USAGE_RETENTION_SECONDS = 400 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    audit_id: str
    workspace_id: str
    action: str
    actor: str
    target: str = ""
    outcome: str = "ok"  # ok | denied | failed; infra SSH also validation_failed | approval_required
    detail: dict[str, Any] = field(default_factory=dict)
    at: str
    request_id: str = "-"
    expires_epoch: int  # kept for AUDIT_RETENTION_SECONDS


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageCount:
    """One day's total of one kind of use (jobs by type, runtime-seconds, bytes pulled, ...)."""

    workspace_id: str
    day: str  # YYYY-MM-DD, UTC
    kind: str
    subkind: str
    amount: float
    expires_epoch: int | None = None  # kept for USAGE_RETENTION_SECONDS after the day


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    since: str
    days: int
    totals: dict[str, dict[str, float]]
    daily: list[UsageCount]


def usage_report(counts: list[UsageCount], since: str, days: int) -> UsageReport:
    totals: dict[str, dict[str, float]] = {}
    for count in counts:
        by_kind = totals.setdefault(count.kind, {})
        by_kind[count.subkind] = by_kind.get(count.subkind, 0) + count.amount
    return UsageReport(since=since, days=days, totals=totals, daily=counts)
