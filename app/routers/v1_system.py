"""`/v1` readiness, policies, storage, capabilities and runtimes."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.schemas.runtimes import runtime_view
from app.schemas.system import Readiness, policies_view
from app.web.deps import ServicesDep, User

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/ready", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Not ready: a core check failed"}})
def ready(services: ServicesDep) -> JSONResponse:
    """Core checks (table, queues, key, storage) and warnings; 503 when a core check fails."""
    is_ready, report = services.system.readiness()
    return JSONResponse(Readiness(**report).model_dump(), status_code=200 if is_ready else 503)


@router.get("/policies")
def policies(principal: User, services: ServicesDep) -> dict[str, Any]:
    return {"success": True, **policies_view(services.settings)}


@router.get("/system/storage")
def storage(principal: User, services: ServicesDep) -> dict[str, Any]:
    """The API's data directory and disk, and each of the workspace's runtimes with its package
    cache (versions, sizes, last use, in use, the cap), as its last heartbeat reported them."""
    system = services.system
    return {"success": True, **system.storage(), "runtimes": system.runtime_storage(principal.workspace_id)}


@router.get("/capabilities")
def capabilities(principal: User, services: ServicesDep) -> dict[str, Any]:
    """Aggregated from the online runtimes that serve this workspace."""
    return {"success": True, **services.system.capabilities(principal.workspace_id)}


@router.get("/runtimes")
def list_runtimes(principal: User, services: ServicesDep) -> dict[str, Any]:
    runtimes = services.runtimes
    now = services.clock.now()
    return {"success": True,
            "runtimes": [runtime_view(r, runtimes.status(r, now)) for r in runtimes.visible(principal.workspace_id)]}
