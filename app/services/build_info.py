"""Liveness and build metadata: what a cold start must answer without loading anything else."""

import platform
from typing import Any

from app import __version__
from app.settings import Settings


def liveness(settings: Settings) -> dict[str, Any]:
    return {"status": "ok", "runtime_id": "control-plane", "mode": settings.mode, "version": __version__}


def version(settings: Settings) -> dict[str, Any]:
    return {
        "name": "berth",
        "version": __version__,
        "api_version": "0.2.0",
        "commit": settings.build_commit,
        "build_date": settings.build_date,
        "mode": settings.mode,
        "python": platform.python_version(),
    }
