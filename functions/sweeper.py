"""Lambda entry point of the scheduled sweeper (EventBridge, every minute)."""

from dataclasses import asdict
from typing import Any

from app.composition import services
from app.logs import configure

configure()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return asdict(services().sweeper.sweep())
