"""`/status` (control surface): service, sandbox driver, table, queues and storage."""

from fastapi import APIRouter

from app.services import runtimes, system

router = APIRouter(tags=["health"])


@router.get("/status")
def status() -> dict:
    return system.status_report(runtimes.all_runtimes_for_status)
