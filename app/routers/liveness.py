"""`/health`, `/v1/health` and `/v1/version`: answered without storage, credentials or heavy imports."""

from fastapi import APIRouter

from app.services import build_info

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict:
    """Liveness only (control surface)."""
    return {"success": True, "status": "ok"}


@router.get("/v1/health")
def v1_health() -> dict:
    return build_info.liveness()


@router.get("/v1/version")
def version() -> dict:
    return build_info.version()
