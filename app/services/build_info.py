"""Liveness and build metadata: what a cold start must answer without loading anything else."""

import platform

from app import __version__
from app.settings import get_settings


def liveness() -> dict:
    return {"status": "ok", "runtime_id": "control-plane", "mode": get_settings().mode, "version": __version__}


def version() -> dict:
    settings = get_settings()
    return {
        "name": "berth",
        "version": __version__,
        "api_version": "0.2.0",
        "commit": settings.build_commit,
        "build_date": settings.build_date,
        "mode": settings.mode,
        "python": platform.python_version(),
    }
