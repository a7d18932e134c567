"""MatrixShell: one long-lived shell sandbox per workspace, running the shell MCP server that
ships with the worker. `exec` runs a command in it under the policy's deny-list (checked here,
and again by the server itself)."""

from app import clock
from app.auth.principal import Principal
from app.errors import Conflict, ConditionFailed, Forbidden
from app.contract.messages import FINAL_JOB_STATUSES, JobStatus, JobType
from app.contract.policy import SandboxRejected
from app.schemas.sandboxes import SandboxRequest, ShellExecRequest, ShellExecResult
from app.services import sandboxes, system
from app.settings import get_settings
from app.store import get_store
from app.store.accounts import workspace_pk

SHELL_COMMAND = "python3 matrixshell_server.py"


def _enabled() -> None:
    if not get_settings().matrixshell_enabled:
        raise Forbidden("MatrixShell is disabled on this deployment (BERTH_MATRIXSHELL_ENABLED=false)")


def _shell_job(principal: Principal) -> dict | None:
    workspace = get_store().accounts.get_workspace(principal.workspace_id) or {}
    job_id = workspace.get("matrixshell_job_id")
    job = get_store().jobs.get(principal.workspace_id, job_id) if job_id else None
    if job is None or job["status"] in {s.value for s in FINAL_JOB_STATUSES}:
        return None
    return job


def status(principal: Principal) -> dict:
    _enabled()
    job = _shell_job(principal)
    if job is None:
        return {"enabled": True, "installed": False, "status": "not_installed"}
    view = sandboxes.view(job)
    return {"enabled": True, "installed": view.state == "running", "status": view.state, "job_id": job["job_id"],
            "runtime_id": job.get("runtime_id"), "isolation": view.isolation, "expires_at": view.expires_at}


def install(principal: Principal) -> dict:
    _enabled()
    existing = _shell_job(principal)
    if existing is not None:
        return existing
    request = SandboxRequest(start_command=SHELL_COMMAND, runtime="python", labels={"berth": "matrixshell"},
                             ttl_seconds=get_settings().max_ttl_seconds)
    job = sandboxes.create(principal, request, job_type=JobType.mcp_run, builtin="matrixshell")
    try:
        get_store().table.update(workspace_pk(principal.workspace_id), "WORKSPACE",
                                 set={"matrixshell_job_id": job["job_id"], "matrixshell_installed_at": clock.iso()})
    except ConditionFailed as error:
        raise Conflict("the workspace changed while installing; retry") from error
    return job


def execute(principal: Principal, request: ShellExecRequest) -> ShellExecResult:
    _enabled()
    try:
        system.sandbox_policy().check_denylist(request.command)
    except SandboxRejected as error:
        raise Forbidden(f"command refused by policy: {error}") from error
    job = _shell_job(principal)
    if job is None or job["status"] != JobStatus.running.value:
        raise Conflict("MatrixShell is not installed or not running yet: POST /v1/matrixshell/install first")
    answer = sandboxes.call_tool(principal, job["job_id"], "exec",
                                 {"command": request.command, "timeout_seconds": request.timeout_seconds})
    structured = answer["result"].get("structuredContent") or {}
    if not answer["ok"] or "exit_code" not in structured:
        text = " ".join(c.get("text", "") for c in answer["result"].get("content", []) if isinstance(c, dict))
        raise Forbidden(text or "the shell refused the command") if "denied" in text else Conflict(text or "exec failed")
    return ShellExecResult(stdout=structured.get("stdout", ""), stderr=structured.get("stderr", ""),
                           exit_code=int(structured["exit_code"]))
