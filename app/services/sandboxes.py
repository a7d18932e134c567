"""Sandboxes: jobs of type `mcp.test` (and long-lived `mcp.run`), seen as sessions, sandboxes and
containers. Everything that needs the server itself (its tools, a call, a lifecycle action) is a
control message to the runtime that runs it, answered within a bound.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from anyio import to_thread
from pydantic import TypeAdapter, ValidationError

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import JobStatus, JobType, SandboxServer, ToolCallArguments
from app.domain.jobs import Job, JobEvent
from app.domain.sandboxes import ACTIONS, SANDBOX_STEP, SERVER_ACTIONS, Sandbox, sandbox_of, state_of_ended
from app.errors import BadRequest, Conflict, NotFound, Unprocessable
from app.schemas.jobs import secret_names
from app.schemas.sandboxes import ToolView
from app.services.control import ControlChannel
from app.services.event_feed import EventFeed
from app.services.jobs import JobService
from app.services.keyring import JobSecrets
from app.services.policy import check_start_command
from app.settings import Settings
from app.store import Store
from app.store.table import Page

INSPECT_TIMEOUT_SECONDS = 3.0
_TOOL_LIST = TypeAdapter(list[ToolView])


def tools_reported_at_start(report: JobEvent | None) -> list[ToolView] | None:
    """The tools a `running` report carries (the worker's listing as the server came up), or None
    when it carries none: a listing too large for an event, or a report of another state."""
    data = report.data if report is not None else {}
    if data.get("state") != "running" or "tool_definitions" not in data:
        return None
    try:  # the runtime's word: anything unreadable means asking the server instead
        return _TOOL_LIST.validate_python(data["tool_definitions"])
    except ValidationError:
        return None


class SandboxService:
    def __init__(self, store: Store, settings: Settings, jobs: JobService, job_secrets: JobSecrets,
                 control: ControlChannel, feed: EventFeed, clock: Clock):
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self.job_secrets = job_secrets
        self.control = control
        self.feed = feed
        self.clock = clock

    def create(self, principal: Principal, payload: dict[str, Any], ttl_seconds: int | None,
               job_type: JobType = JobType.mcp_test) -> Job:
        """Start an MCP server (`payload` as McpServerPayload) in a sandbox; 403 when the policy refuses it."""
        check_start_command(self.settings, SandboxServer.model_validate(payload).command)
        return self.jobs.create(principal, job_type, payload, ttl_seconds)

    def get(self, principal: Principal, sandbox_id: str) -> Job:
        job = self.store.jobs.get(principal.workspace_id, sandbox_id)
        if job is None or not job.is_sandbox:
            raise NotFound(f"no sandbox {sandbox_id}")
        return job

    def sandbox(self, job: Job) -> Sandbox:
        """The sandbox with its server's state as the worker last reported it."""
        if state_of_ended(job) is not None:
            return sandbox_of(job, None)
        return sandbox_of(job, self.store.jobs.latest_event(job.workspace_id, job.job_id, step=SANDBOX_STEP))

    def page(self, principal: Principal, *, limit: int, cursor: str | None, status: JobStatus | None) -> Page[Sandbox]:
        page = self.store.jobs.page(principal.workspace_id, limit=limit, cursor=cursor, status=status,
                                    job_type=JobType.mcp_test)
        return page.map(self.sandbox)

    @staticmethod
    def _running(job: Job) -> Job:
        if job.status != JobStatus.running:
            raise Conflict(f"sandbox {job.job_id} is {job.status.value}, not running")
        return job

    def running(self, principal: Principal, sandbox_id: str) -> Job:
        """A running sandbox's job, or Conflict."""
        return self._running(self.get(principal, sandbox_id))

    async def wait_until_started(self, principal: Principal, sandbox_id: str, wait_seconds: float) -> JobEvent | None:
        """A readiness wait: return once the server has left `starting` (or its job ended), or when
        `wait_seconds` pass. Woken by the worker's `sandbox` event; the table is re-read meanwhile.
        Returns the `sandbox` event that ended the wait, if one did."""
        feed = self.feed.subscribe(principal.workspace_id, sandbox_id)
        try:
            deadline = self.clock.now() + wait_seconds
            job = await to_thread.run_sync(self.get, principal, sandbox_id)
            while (await to_thread.run_sync(self.sandbox, job)).state == "starting":
                remaining = deadline - self.clock.now()
                if remaining <= 0:
                    return None
                published = await feed.wait(min(self.settings.sse_poll_seconds, remaining))
                reports = [event for event in published if event.step == SANDBOX_STEP]
                if reports:
                    return reports[-1]
                if any(event.ends_job for event in published):
                    return None  # the job ended: the caller reads the outcome
                job = await to_thread.run_sync(self.get, principal, sandbox_id)
            return None
        finally:
            feed.close()

    def _routable(self, principal: Principal, sandbox_id: str) -> Job:
        """A running sandbox's job for a call on its server (read through the store's brief cache)."""
        job = self.store.jobs.running(principal.workspace_id, sandbox_id)
        if job is None or not job.is_sandbox:
            raise NotFound(f"no sandbox {sandbox_id}")
        return self._running(job)

    def tools(self, principal: Principal, sandbox_id: str) -> list[ToolView]:
        job = self._routable(principal, sandbox_id)
        result = self.control.call(job, "tools.list", {}, timeout=self.settings.tool_call_timeout_seconds)
        return [ToolView(**tool) for tool in result.get("tools", [])]

    def call_tool(self, principal: Principal, sandbox_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """`{"ok", "result"}`: a tool's own failure is `ok: false`."""
        job = self._routable(principal, sandbox_id)
        wait = self.settings.tool_call_timeout_seconds
        # The worker gives up a little before the API does, so its answer (a timeout) still arrives.
        request = ToolCallArguments(name=name, arguments=arguments, timeout_seconds=max(wait - 1.0, 0.5))
        result = self.control.call(job, "tools.call", request.model_dump(), timeout=wait)
        return {"ok": bool(result.get("ok")), "result": result.get("result", {})}

    def act(self, principal: Principal, sandbox_id: str, action: str) -> str:
        """Stop, start or restart the server; the sandbox (its job) lives on until deleted or expired."""
        if action not in SERVER_ACTIONS:
            raise NotFound(f"no action {action}: use one of {', '.join(ACTIONS)}")
        job = self.running(principal, sandbox_id)
        result = self.control.call(job, SERVER_ACTIONS[action], {}, timeout=self.settings.tool_call_timeout_seconds)
        return result.get("state", "unknown")

    def delete(self, principal: Principal, sandbox_id: str) -> JobStatus:
        self.get(principal, sandbox_id)
        return self.jobs.cancel(principal, sandbox_id)

    def update(self, principal: Principal, sandbox_id: str, *, ttl_seconds: int | None = None,
               env: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> Job:
        """TTL applies at once; env at the next start or restart; labels are metadata. The env is a
        secret: stored sealed, and sent to a running sandbox's runtime sealed for it alone."""
        job = self.get(principal, sandbox_id)
        if job.is_final:
            raise Conflict(f"sandbox {sandbox_id} has ended ({job.status.value})")
        deadline = None
        if ttl_seconds is not None:
            if ttl_seconds > self.settings.max_ttl_seconds:
                raise Unprocessable(f"ttl_seconds exceeds the policy's max_ttl_seconds {self.settings.max_ttl_seconds}")
            deadline = job.created_epoch + ttl_seconds
            if deadline <= self.clock.now():
                raise BadRequest("that ttl_seconds would end the sandbox in the past; DELETE it instead")
        secrets = None
        if env is not None:
            secrets = {**self.job_secrets.open(job), "env": env}
            if not env:
                del secrets["env"]
        if deadline is None and secrets is None and labels is None:
            return job
        sealed = names = None
        if secrets is not None:
            if job.status == JobStatus.running:
                self.control.require_secrets_deliverable(job)  # before anything changes
            sealed = self.job_secrets.seal_at_rest(job.workspace_id, secrets) if secrets else ""
            names = secret_names(secrets)
        job = self.store.jobs.change_sandbox(job, deadline=deadline, ttl_seconds=ttl_seconds, labels=labels,
                                             secrets=sealed, secret_names=names)
        if job.status == JobStatus.running and (deadline is not None or secrets is not None):
            changes = {"expires_at": deadline} if deadline is not None else {}
            self.control.call(job, "sandbox.update", changes, timeout=self.settings.tool_call_timeout_seconds,
                              secrets=secrets)
        return job

    # --- containers: the managed sandboxes and their processes, across runtimes --------------------

    def containers(self, principal: Principal) -> list[tuple[Job, dict[str, Any] | Exception]]:
        """Running sandboxes, each with what its runtime reports on its processes (or why it could not)."""
        running: list[Job] = []
        for job_type in (JobType.mcp_test, JobType.mcp_run):
            running += self.store.jobs.page(principal.workspace_id, limit=200, cursor=None, status=JobStatus.running,
                                            job_type=job_type).items
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(zip(running, pool.map(self._inspect, running), strict=True))

    def _inspect(self, job: Job) -> dict[str, Any] | Exception:
        try:
            return self.control.call(job, "sandbox.inspect", {}, timeout=INSPECT_TIMEOUT_SECONDS)
        except Exception as error:  # one silent runtime must not hide the others' containers
            return error

    def container_action(self, principal: Principal, container_id: str, action: str) -> str:
        if action not in (*ACTIONS, "remove"):
            raise NotFound(f"no action {action}: use one of {', '.join(ACTIONS)}, remove")
        if action == "remove":
            return self.delete(principal, container_id).value
        return self.act(principal, container_id, action)
