"""`/v1` readiness, policies, storage, capabilities and runtimes."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.auth.dependencies import User
from app.services import runtimes, system

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/ready")
def ready() -> JSONResponse:
    """Core checks (table, queues, key, storage) and warnings; 503 when a core check fails."""
    is_ready, report = system.readiness(runtimes.all_runtimes_for_status)
    return JSONResponse(report, status_code=200 if is_ready else 503)


@router.get("/policies")
def policies(principal: User) -> dict:
    return system.policies()


@router.get("/system/storage")
def storage(principal: User) -> dict:
    return system.storage()


@router.get("/capabilities")
def capabilities(principal: User) -> dict:
    """Aggregated from the online runtimes that serve this workspace."""
    return system.capabilities(runtimes.visible_runtimes(principal.workspace_id))


@router.get("/runtimes")
def list_runtimes(principal: User) -> dict:
    return {"runtimes": runtimes.visible_runtimes(principal.workspace_id)}
