"""`/v1/matrixshell/*`: a shell sandbox per workspace (403 when disabled or denied)."""

from typing import Any

from fastapi import APIRouter, status

from app.schemas.jobs import CreateJobResponse
from app.schemas.sandboxes import ShellExecRequest, ShellExecResult, shell_status_view
from app.web.deps import ServicesDep, User
from app.web.openapi import errors

router = APIRouter(prefix="/v1/matrixshell", tags=["matrixshell"])


@router.get("/status")
def shell_status(principal: User, services: ServicesDep) -> dict[str, Any]:
    return {"success": True, **shell_status_view(services.matrixshell.status(principal))}


@router.post("/install", status_code=status.HTTP_202_ACCEPTED, response_model=CreateJobResponse,
             responses=errors(409, 429))
def install(principal: User, services: ServicesDep) -> CreateJobResponse:
    """Start the workspace's shell sandbox (a job); installing twice returns the same job."""
    job = services.matrixshell.install(principal)
    return CreateJobResponse.of(job, services.jobs.waiting_for(job))


@router.post("/exec", response_model=ShellExecResult, responses=errors(409, 502, 504))
def execute(principal: User, body: ShellExecRequest, services: ServicesDep) -> ShellExecResult:
    """Run a command in the shell sandbox: stdout, stderr and exit code. 403 for denied commands."""
    output = services.matrixshell.execute(principal, body.command, body.timeout_seconds)
    return ShellExecResult(stdout=output.stdout, stderr=output.stderr, exit_code=output.exit_code)
