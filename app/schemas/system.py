"""Views of the system routes: the policy in force (`/v1/policies`), audit entries and usage."""

from typing import Any

from pydantic import BaseModel, Field

from app.domain.activity import AuditRecord, UsageReport
from app.settings import Settings

_AUDIT_FIELDS = ("audit_id", "at", "action", "actor", "target", "outcome", "detail", "request_id")


def policies_view(settings: Settings) -> dict[str, Any]:
    """The guardrails in force: job limits, sandbox limits and command rules."""
    return {
        "limits": {
            "max_ttl_seconds": settings.max_ttl_seconds,
            "default_ttl_seconds": settings.default_ttl_seconds,
            "max_concurrent_jobs": settings.max_concurrent_jobs,
            "max_body_bytes": settings.max_body_bytes,
            "tool_call_timeout_seconds": settings.tool_call_timeout_seconds,
        },
        "sandbox": {
            "memory_mb": settings.sandbox_memory_mb,
            "cpu_seconds": settings.sandbox_cpu_seconds,
            "max_processes": settings.sandbox_max_processes,
            "max_open_files": settings.sandbox_max_open_files,
            "max_file_mb": settings.sandbox_max_file_mb,
            "disk_mb": settings.sandbox_disk_mb,
            "sandbox_memory_mb": settings.sandbox_total_memory_mb,
            "cpu_cores": settings.sandbox_cpu_cores,
            "network": settings.sandbox_network,
        },
        "commands": {"allow": settings.command_allowlist, "deny": settings.command_denylist},
        "matrixshell": {"enabled": settings.matrixshell_enabled},
    }


def audit_view(entry: AuditRecord) -> dict[str, Any]:
    return {field: getattr(entry, field) for field in _AUDIT_FIELDS}


def usage_view(report: UsageReport) -> dict[str, Any]:
    return {"since": report.since, "days": report.days, "totals": report.totals,
            "daily": [{"day": c.day, "kind": c.kind, "subkind": c.subkind, "amount": c.amount} for c in report.daily]}


class Readiness(BaseModel):
    """`/v1/ready`: 200 when every core check passes, 503 (with the same report) when one fails."""

    ready: bool
    checks: list[dict[str, Any]] = Field(description="each core check: name, ok, detail")
    warnings: list[str]
