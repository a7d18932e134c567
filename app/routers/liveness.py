"""`/health`, `/v1/health` and `/v1/version`: answered without storage, credentials or heavy imports."""

from typing import Any

from fastapi import APIRouter

from app.services import build_info
from app.web.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, Any]:
    """Liveness only (control surface)."""
    return {"success": True, "status": "ok"}


@router.get("/v1/health")
def v1_health(services: ServicesDep) -> dict[str, Any]:
    return {"success": True, **build_info.liveness(services.settings)}


@router.get("/v1/version")
def version(services: ServicesDep) -> dict[str, Any]:
    return {"success": True, **build_info.version(services.settings)}
