"""`/status` (control surface): service, sandbox driver, table, queues and storage."""

from typing import Any

from fastapi import APIRouter

from app.web.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/status")
def status(services: ServicesDep) -> dict[str, Any]:
    return {"success": True, **services.system.status_report()}
