"""Recording who did what (audit) and how much was used (usage metering)."""

from app import clock
from app.ids import new_id
from app.logs import get_logger, log_event
from app.logs import request_id_var
from app.store import get_store
from app.store.table import Write

logger = get_logger("berth.audit")


def _audit_item(workspace_id: str, action: str, actor: str, target: str, outcome: str, detail: dict | None) -> dict:
    at = clock.now()
    return get_store().activity.audit_item(
        workspace_id, new_id("aud"), at, action=action, actor=actor, target=target, outcome=outcome,
        detail=detail or {}, at=clock.iso(at), request_id=request_id_var.get(),
    )


def audit(workspace_id: str, action: str, *, actor: str, target: str = "", outcome: str = "ok",
          detail: dict | None = None) -> None:
    get_store().activity.add_audit(_audit_item(workspace_id, action, actor, target, outcome, detail))
    log_audit(action, actor, target, outcome)


def audit_write(workspace_id: str, action: str, *, actor: str, target: str = "", outcome: str = "ok",
                detail: dict | None = None) -> Write:
    """The audit record as part of the transaction that does the action; `log_audit` once it commits."""
    return get_store().activity.audit_write(_audit_item(workspace_id, action, actor, target, outcome, detail))


def log_audit(action: str, actor: str, target: str = "", outcome: str = "ok") -> None:
    log_event(logger, "audit", action=action, actor=actor, target=target, outcome=outcome)


def meter(workspace_id: str, kind: str, subkind: str, amount: float = 1) -> None:
    get_store().activity.add_usage(workspace_id, kind, subkind, amount, clock.now())


def meter_write(workspace_id: str, kind: str, subkind: str, amount: float = 1) -> Write:
    return get_store().activity.usage_write(workspace_id, kind, subkind, amount, clock.now())


def list_audit(workspace_id: str, *, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    page = get_store().activity.list_audit(workspace_id, limit=limit, cursor=cursor)
    fields = ("audit_id", "at", "action", "actor", "target", "outcome", "detail", "request_id")
    return [{k: item.get(k) for k in fields} for item in page.items], page.cursor


def usage_report(workspace_id: str, days: int = 30) -> dict:
    first_day = clock.day(clock.now() - (days - 1) * 86400)
    totals: dict[str, dict[str, float]] = {}
    daily: list[dict] = []
    for item in get_store().activity.usage_since(workspace_id, first_day):
        totals.setdefault(item["kind"], {}).setdefault(item["subkind"], 0)
        totals[item["kind"]][item["subkind"]] += item["amount"]
        daily.append({"day": item["day"], "kind": item["kind"], "subkind": item["subkind"], "amount": item["amount"]})
    return {"since": first_day, "days": days, "totals": totals, "daily": daily}
