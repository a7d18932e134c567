"""`/api/sandboxes` and `/api/containers`: the control surface's view of the same sandboxes."""

from fastapi import APIRouter, status

from app.contract.messages import JobStatus
from app.schemas.sandboxes import (
    ActionResponse,
    ContainerList,
    ContainerView,
    SandboxDetail,
    SandboxList,
    SandboxPatch,
    SandboxRequest,
    SandboxView,
)
from app.web.deps import Paging, ServicesDep, User
from app.web.openapi import errors

router = APIRouter(tags=["sandboxes"])


@router.get("/api/sandboxes", response_model=SandboxList)
def list_sandboxes(principal: User, services: ServicesDep, paging: Paging, status: JobStatus | None = None
                   ) -> SandboxList:
    page = services.sandboxes.page(principal, limit=paging.limit, cursor=paging.cursor, status=status)
    return SandboxList(sandboxes=[SandboxView.of(sandbox) for sandbox in page.items], next_cursor=page.cursor)


@router.post("/api/sandboxes", status_code=status.HTTP_201_CREATED, response_model=SandboxDetail,
             responses=errors(409, 429))
def create_sandbox(principal: User, body: SandboxRequest, services: ServicesDep) -> SandboxDetail:
    sandboxes = services.sandboxes
    job = sandboxes.create(principal, body.payload(), body.ttl_seconds, wait=body.wait)
    return SandboxDetail.of(sandboxes.sandbox(job), services.jobs.waiting_for(job))


@router.get("/api/sandboxes/{sandbox_id}", response_model=SandboxDetail)
def read_sandbox(principal: User, sandbox_id: str, services: ServicesDep) -> SandboxDetail:
    sandboxes = services.sandboxes
    job = sandboxes.get(principal, sandbox_id)
    return SandboxDetail.of(sandboxes.sandbox(job), services.jobs.waiting_for(job))


@router.patch("/api/sandboxes/{sandbox_id}", response_model=SandboxDetail, responses=errors(409, 502, 504))
def update_sandbox(principal: User, sandbox_id: str, body: SandboxPatch, services: ServicesDep) -> SandboxDetail:
    """TTL applies at once; env at the next start or restart; labels are metadata."""
    sandboxes = services.sandboxes
    job = sandboxes.update(principal, sandbox_id, ttl_seconds=body.ttl_seconds, env=body.env, labels=body.labels)
    return SandboxDetail.of(sandboxes.sandbox(job))


@router.delete("/api/sandboxes/{sandbox_id}", response_model=ActionResponse)
def delete_sandbox(principal: User, sandbox_id: str, services: ServicesDep) -> ActionResponse:
    status = services.sandboxes.delete(principal, sandbox_id)
    return ActionResponse(id=sandbox_id, action="delete", state=status.value)


@router.post("/api/sandboxes/{sandbox_id}/{action}", response_model=ActionResponse, responses=errors(409, 502, 504))
def sandbox_action(principal: User, sandbox_id: str, action: str, services: ServicesDep) -> ActionResponse:
    """`start`, `stop` or `restart` the sandbox's server."""
    return ActionResponse(id=sandbox_id, action=action, state=services.sandboxes.act(principal, sandbox_id, action))


@router.get("/api/containers", response_model=ContainerList)
def list_containers(principal: User, services: ServicesDep) -> ContainerList:
    """Running sandboxes across runtimes, with their processes as the runtimes report them."""
    found = services.sandboxes.containers(principal)
    return ContainerList(containers=[ContainerView.of(job, inspected) for job, inspected in found])


@router.post("/api/containers/{container_id}/{action}", response_model=ActionResponse, responses=errors(409, 502, 504))
def container_action(principal: User, container_id: str, action: str, services: ServicesDep) -> ActionResponse:
    """`start`, `stop`, `restart` or `remove`."""
    state = services.sandboxes.container_action(principal, container_id, action)
    return ActionResponse(id=container_id, action=action, state=state)
