"""Lambda entry point of the scheduled marketplace refresh (EventBridge): reads the configured MCP
registries and stores what changed, within the time this invocation has left."""

from dataclasses import asdict
from typing import Any

from app.composition import services
from app.logs import configure

configure()

# Left unspent at the end: the refresh stops reading registries this long before the timeout.
MARGIN_SECONDS = 15.0


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    report = services().marketplace.refresh(max(budget, 1.0), actor="schedule")
    return {"entries": report.entries, "failed": report.failed, "seconds": report.seconds,
            "registries": [asdict(registry) for registry in report.registries]}
