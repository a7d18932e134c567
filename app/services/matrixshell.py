"""MatrixShell: one long-lived shell sandbox per workspace, running the shell MCP server that
ships with the worker. `exec` runs a command in it under the policy's deny-list (checked here,
and again by the server itself)."""

from dataclasses import dataclass

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import JobStatus, JobType
from app.domain.jobs import Job
from app.domain.sandboxes import Sandbox
from app.errors import ConditionFailed, Conflict, Forbidden
from app.services.policy import check_shell_command
from app.services.sandboxes import SandboxService
from app.settings import Settings
from app.store import Store

SHELL_COMMAND = "python3 matrixshell_server.py"


@dataclass(frozen=True)
class ShellOutput:
    stdout: str
    stderr: str
    exit_code: int


class MatrixShellService:
    def __init__(self, store: Store, settings: Settings, sandboxes: SandboxService, clock: Clock):
        self.store = store
        self.settings = settings
        self.sandboxes = sandboxes
        self.clock = clock

    def _enabled(self) -> None:
        if not self.settings.matrixshell_enabled:
            raise Forbidden("MatrixShell is disabled on this deployment (BERTH_MATRIXSHELL_ENABLED=false)")

    def _shell_job(self, principal: Principal) -> Job | None:
        workspace = self.store.accounts.workspace(principal.workspace_id)
        job_id = workspace.matrixshell_job_id if workspace else None
        job = self.store.jobs.get(principal.workspace_id, job_id) if job_id else None
        return None if job is None or job.is_final else job

    def status(self, principal: Principal) -> Sandbox | None:
        """The workspace's shell sandbox, or None when none is installed (or it ended)."""
        self._enabled()
        job = self._shell_job(principal)
        return self.sandboxes.sandbox(job) if job is not None else None

    def install(self, principal: Principal) -> Job:
        """Start the workspace's shell sandbox; installing twice returns the same job."""
        self._enabled()
        existing = self._shell_job(principal)
        if existing is not None:
            return existing
        payload = {"start_command": SHELL_COMMAND, "runtime": "python", "transport": "stdio", "env": {},
                   "labels": {"berth": "matrixshell"}, "builtin": "matrixshell"}
        job = self.sandboxes.create(principal, payload, self.settings.max_ttl_seconds, job_type=JobType.mcp_run)
        try:
            self.store.accounts.record_matrixshell(principal.workspace_id, job.job_id, self.clock.iso())
        except ConditionFailed as error:
            raise Conflict("the workspace changed while installing; retry") from error
        return job

    def execute(self, principal: Principal, command: str, timeout_seconds: float) -> ShellOutput:
        self._enabled()
        check_shell_command(self.settings, command)
        job = self._shell_job(principal)
        if job is None or job.status != JobStatus.running:
            raise Conflict("MatrixShell is not installed or not running yet: POST /v1/matrixshell/install first")
        answer = self.sandboxes.call_tool(principal, job.job_id, "exec",
                                          {"command": command, "timeout_seconds": timeout_seconds})
        structured = answer["result"].get("structuredContent") or {}
        if not answer["ok"] or "exit_code" not in structured:
            text = " ".join(c.get("text", "") for c in answer["result"].get("content", []) if isinstance(c, dict))
            if "denied" in text:
                raise Forbidden(text or "the shell refused the command")
            raise Conflict(text or "exec failed")
        return ShellOutput(stdout=structured.get("stdout", ""), stderr=structured.get("stderr", ""),
                           exit_code=int(structured["exit_code"]))
