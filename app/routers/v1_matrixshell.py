"""`/v1/matrixshell/*`: a shell sandbox per workspace (403 when disabled or denied)."""

from fastapi import APIRouter, status

from app.auth.dependencies import User
from app.schemas.jobs import CreateJobResponse
from app.schemas.sandboxes import ShellExecRequest, ShellExecResult
from app.services import jobs, matrixshell

router = APIRouter(prefix="/v1/matrixshell", tags=["matrixshell"])


@router.get("/status")
def shell_status(principal: User) -> dict:
    return matrixshell.status(principal)


@router.post("/install", status_code=status.HTTP_202_ACCEPTED, response_model=CreateJobResponse)
def install(principal: User) -> CreateJobResponse:
    """Start the workspace's shell sandbox (a job); installing twice returns the same job."""
    return jobs.accepted(matrixshell.install(principal))


@router.post("/exec", response_model=ShellExecResult)
def execute(principal: User, body: ShellExecRequest) -> ShellExecResult:
    """Run a command in the shell sandbox: stdout, stderr and exit code. 403 for denied commands."""
    return matrixshell.execute(principal, body)
