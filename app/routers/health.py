"""`/health` and `/status` (control surface)."""

from fastapi import APIRouter

from app.services import runtimes, system

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict:
    """Liveness only: answers without touching storage or credentials."""
    return {"success": True, "status": "ok"}


@router.get("/status")
def status() -> dict:
    """Service, sandbox driver, table, queues and storage."""
    return system.status_report(runtimes.all_runtimes_for_status)
