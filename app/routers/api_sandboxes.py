"""`/api/sandboxes` and `/api/containers`: the control surface's view of the same sandboxes."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import User
from app.contract.messages import JobStatus
from app.schemas.sandboxes import (ActionResponse, ContainerList, SandboxList, SandboxPatch, SandboxRequest,
                                   SandboxView)
from app.services import sandboxes

router = APIRouter(tags=["sandboxes"])


@router.get("/api/sandboxes", response_model=SandboxList)
def list_sandboxes(principal: User, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                   cursor: Annotated[str | None, Query(max_length=2000)] = None,
                   status: JobStatus | None = None) -> SandboxList:
    items, next_cursor = sandboxes.list_sandboxes(principal, limit=limit, cursor=cursor, status=status)
    return SandboxList(sandboxes=items, next_cursor=next_cursor)


@router.post("/api/sandboxes", status_code=status.HTTP_201_CREATED, response_model=SandboxView)
def create_sandbox(principal: User, body: SandboxRequest) -> SandboxView:
    return sandboxes.view(sandboxes.create(principal, body))


@router.get("/api/sandboxes/{sandbox_id}", response_model=SandboxView)
def read_sandbox(principal: User, sandbox_id: str) -> SandboxView:
    return sandboxes.view(sandboxes.get(principal, sandbox_id))


@router.patch("/api/sandboxes/{sandbox_id}", response_model=SandboxView)
def update_sandbox(principal: User, sandbox_id: str, body: SandboxPatch) -> SandboxView:
    """TTL applies at once; env at the next start or restart; labels are metadata."""
    return sandboxes.view(sandboxes.update(principal, sandbox_id, body))


@router.delete("/api/sandboxes/{sandbox_id}", response_model=ActionResponse)
def delete_sandbox(principal: User, sandbox_id: str) -> ActionResponse:
    return ActionResponse(id=sandbox_id, action="delete", state=sandboxes.delete(principal, sandbox_id).value)


@router.post("/api/sandboxes/{sandbox_id}/{action}", response_model=ActionResponse)
def sandbox_action(principal: User, sandbox_id: str, action: str) -> ActionResponse:
    """`start`, `stop` or `restart` the sandbox's server."""
    return ActionResponse(id=sandbox_id, action=action, state=sandboxes.act(principal, sandbox_id, action))


@router.get("/api/containers", response_model=ContainerList)
def list_containers(principal: User) -> ContainerList:
    """Running sandboxes across runtimes, with their processes as the runtimes report them."""
    return ContainerList(containers=sandboxes.containers(principal))


@router.post("/api/containers/{container_id}/{action}", response_model=ActionResponse)
def container_action(principal: User, container_id: str, action: str) -> ActionResponse:
    """`start`, `stop`, `restart` or `remove`."""
    state = sandboxes.container_action(principal, container_id, action)
    return ActionResponse(id=container_id, action=action, state=state)
