"""Containers: the running sandboxes across runtimes, with their processes (`/api/containers`)."""

from typing import Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from app import composition
from app.auth.principal import Tier
from app.mcp.families import ContainerId
from app.mcp.tools import TieredTool, caller_of, changes, reads, tool
from app.schemas.sandboxes import ActionResponse, ContainerView, SandboxView


class Containers(BaseModel):
    containers: list[ContainerView] = Field(description="running sandboxes, each as its runtime reports it")


class ContainerDetail(BaseModel):
    sandbox: SandboxView
    processes: ContainerView | None = Field(
        description="what its runtime reports on its processes; null when it does not run")


def list_containers(ctx: Context) -> Containers:
    """The workspace's running sandboxes across runtimes, with their processes (pids, memory) as
    each runtime reports them; a runtime that does not answer shows state `unknown`."""
    found = composition.services().sandboxes.containers(caller_of(ctx))
    return Containers(containers=[ContainerView.of(job, inspected) for job, inspected in found])


def inspect_container(ctx: Context, container_id: ContainerId) -> ContainerDetail:
    """One sandbox with its server's state and, while it runs, its processes."""
    sandboxes = composition.services().sandboxes
    job, inspected = sandboxes.container(caller_of(ctx), container_id)
    return ContainerDetail(sandbox=SandboxView.of(sandboxes.sandbox(job)),
                           processes=ContainerView.of(job, inspected) if inspected is not None else None)


def container_action(ctx: Context, container_id: ContainerId,
                     action: Literal["start", "stop", "restart", "remove"]) -> ActionResponse:
    """Start, stop or restart a sandbox's server, or remove the sandbox for good (its server
    stops and it cannot be started again)."""
    state = composition.services().sandboxes.container_action(caller_of(ctx), container_id, action)
    return ActionResponse(id=container_id, action=action, state=state)


def tools() -> list[TieredTool]:
    return [
        tool(list_containers, tier=Tier.read, annotations=reads("List containers")),
        tool(inspect_container, tier=Tier.read, annotations=reads("Inspect a container")),
        tool(container_action, tier=Tier.admin,
             annotations=changes("Start, stop, restart or remove a container", destructive=True, idempotent=False)),
    ]
