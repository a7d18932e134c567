"""Lambda entry point of the scheduled sweeper (EventBridge, every minute)."""

from dataclasses import asdict

from app.logs import configure
from app.services.sweeper import sweep

configure()


def handler(event, context):
    return asdict(sweep())
