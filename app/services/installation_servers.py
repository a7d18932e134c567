"""An installation's server: started on demand, reused while it runs, gone when idle.

A package installation's server is a long-lived sandbox job (`mcp.run`) started by the first
call that needs it: its payload carries the package with the installation's values in place,
its secret environment (sealed for the runtime by the job-secrets mechanism, never in the
payload), and its files as presigned URLs. Later calls reuse the job while it runs. Scale to
zero is the job's own deadline: a server lives `installation_idle_seconds` past its last use
(the deadline moves on when a use finds less than half of that left, so a busy server costs a
write now and then, not one per call), at most the policy's `max_ttl_seconds` in all, after
which the next call starts another. A remote installation has no server of berth's: the API
calls the remote with the installation's headers (app.remote_mcp).
"""

from typing import Any

from anyio import to_thread

from app.auth.principal import Principal
from app.catalog import Remote
from app.clock import Clock
from app.contract.messages import JobStatus, JobType
from app.contract.packages import PYPI, PackageSpec
from app.domain.installations import (
    INSTALLATION_LABEL,
    ConfigProblem,
    Installation,
    package_launch,
    remote_headers,
    remote_url,
)
from app.domain.jobs import Job
from app.domain.sandboxes import SANDBOX_STEP
from app.errors import BadGateway, ConditionFailed, Conflict, Forbidden, NotFound, Unprocessable
from app.logs import get_logger, log_event
from app.schemas.sandboxes import ToolView
from app.services.installation_files import InstallationFiles
from app.services.sandboxes import SandboxService, tools_reported_at_start
from app.services.secrets import SecretBox
from app.settings import Settings
from app.store import Store

logger = get_logger("berth.installations")
SECRET_KIND = "installation"  # what an installation's sealed values are bound to
_ATTACH_ATTEMPTS = 3


class InstallationServers:
    def __init__(self, store: Store, settings: Settings, sandboxes: SandboxService, secrets: SecretBox,
                 files: InstallationFiles, clock: Clock):
        self.store = store
        self.settings = settings
        self.sandboxes = sandboxes
        self.secrets = secrets
        self.files = files
        self.clock = clock

    def secret_values(self, installation: Installation) -> dict[str, str]:
        if not installation.secrets:
            return {}
        return self.secrets.open(installation.secrets, kind=SECRET_KIND, workspace_id=installation.workspace_id)

    # --- package servers ----------------------------------------------------------------------------

    def _payload(self, installation: Installation, ttl_seconds: int) -> dict[str, Any]:
        launch = package_launch(PackageSpec.model_validate(installation.target), installation.config,
                                self.secret_values(installation))
        package = launch.package
        return {
            "package": package.model_dump(mode="json", by_alias=True, exclude_none=True),
            "runtime": "python" if package.registry_type == PYPI else "node",
            "env": launch.secret_env,  # a secret field of the payload: sealed, never stored in it
            "labels": {INSTALLATION_LABEL: installation.installation_id},
            "files": [file.model_dump() for file in self.files.delivered(installation, ttl_seconds)],
        }

    def running(self, installation: Installation) -> Job | None:
        """The job serving it, while one is queued or running."""
        if not installation.sandbox_id:
            return None
        job = self.store.jobs.running(installation.workspace_id, installation.sandbox_id)
        return job if job is not None and not job.is_final else None

    def ensure(self, principal: Principal, installation: Installation) -> tuple[Installation, Job]:
        """Its server's job: the one that runs (its deadline moved on), or a new one."""
        for _ in range(_ATTACH_ATTEMPTS):
            job = self.running(installation)
            if job is not None:
                self._keep_alive(principal, job)
                return installation, job
            if installation.pending:
                raise Conflict(f"installation {installation.installation_id} waits for its user's sign-in "
                               f"(OAuth) to supply {', '.join(installation.pending)}")
            ttl = min(self.settings.installation_idle_seconds, self.settings.max_ttl_seconds)
            try:
                payload = self._payload(installation, ttl)
            except ConfigProblem as error:
                raise Unprocessable(str(error)) from error
            job = self.sandboxes.create(principal, payload, ttl, job_type=JobType.mcp_run)
            try:
                installation = self.store.installations.change(installation, sandbox_id=job.job_id, last_error=None)
            except ConditionFailed:  # changed meanwhile (another call started one): use what it holds now
                self.sandboxes.delete(principal, job.job_id)
                found = self.store.installations.get(installation.workspace_id, installation.installation_id)
                if found is None:
                    raise NotFound(f"no installation {installation.installation_id}") from None
                installation = found
                continue
            log_event(logger, "installation server started", installation_id=installation.installation_id,
                      job_id=job.job_id)
            return installation, job
        raise Conflict(f"installation {installation.installation_id} keeps changing; try again")

    def _keep_alive(self, principal: Principal, job: Job) -> None:
        idle, now = self.settings.installation_idle_seconds, self.clock.now()
        if job.deadline - now >= idle / 2:
            return
        ttl = min(int(now - job.created_epoch + idle), self.settings.max_ttl_seconds)
        if ttl <= job.ttl_seconds:
            return  # at the policy's limit: it ends at its deadline and the next use starts another
        try:
            self.sandboxes.update(principal, job.job_id, ttl_seconds=ttl)
        except (Conflict, NotFound):
            pass  # it ended meanwhile: the next use starts another
        self.store.jobs.forget(job.workspace_id, job.job_id)

    def stop(self, principal: Principal, installation: Installation) -> Installation:
        """Stop its server, if one runs."""
        job = self.running(installation)
        if job is not None:
            self.sandboxes.delete(principal, job.job_id)
            self.store.jobs.forget(job.workspace_id, job.job_id)
        if installation.sandbox_id is None:
            return installation
        return self.store.installations.change(installation, sandbox_id=None)

    def restart(self, principal: Principal, installation: Installation) -> bool:
        """Stop its server and start it again with the installation as it now is, if one ran;
        whether one did."""
        if self.running(installation) is None:
            return False
        self.ensure(principal, self.stop(principal, installation))
        return True

    async def tools(self, principal: Principal, installation: Installation, wait_seconds: float) -> list[ToolView]:
        if installation.kind == "remote":
            return [ToolView(**tool) for tool in await self._remote("tools", installation)]
        installation, job = await to_thread.run_sync(self.ensure, principal, installation)
        if wait_seconds:
            report = await self.sandboxes.wait_until_started(principal, job.job_id, wait_seconds)
            listed = tools_reported_at_start(report)
            if listed is not None:
                return listed
        await to_thread.run_sync(self._require_running, principal, installation, job.job_id)
        return await to_thread.run_sync(self.sandboxes.tools, principal, job.job_id)

    def _require_running(self, principal: Principal, installation: Installation, job_id: str) -> None:
        """Conflict while the server starts; BadGateway (with the runtime's words) when it failed."""
        job = self.sandboxes.get(principal, job_id)
        state = self.sandboxes.sandbox(job).state
        if job.status == JobStatus.error or state == "failed":
            # A failed server's job ends in error a moment after the worker reports the failure.
            reported = self.store.jobs.latest_event(job.workspace_id, job.job_id, step=SANDBOX_STEP)
            reason = job.error or (reported.message if reported is not None else "") or "the runtime gave no reason"
            message = f"the server did not start: {reason}"
            try:
                self.store.installations.change(installation, last_error=message, sandbox_id=None)
            except ConditionFailed:
                pass  # changed meanwhile: that change says more
            raise BadGateway(message)
        if job.is_final:
            raise Conflict(f"the server stopped ({job.status.value}); ask again to start it")
        if state != "running":
            raise Conflict(f"the server is {state}: ask again (with wait_seconds) once it runs")

    async def call(self, principal: Principal, installation: Installation, name: str,
                   arguments: dict[str, Any]) -> dict[str, Any]:
        """`{"ok", "result"}`. A server not running yet is started and waited for, briefly
        (`installation_start_wait_seconds`: the call itself must still fit API Gateway's 29 s)."""
        if installation.kind == "remote":
            return await self._remote("call", installation, name, arguments)
        answer = await to_thread.run_sync(self._call_running, principal, installation, name, arguments)
        if answer is not None:
            return answer
        installation, job = await to_thread.run_sync(self.ensure, principal, installation)
        await self.sandboxes.wait_until_started(principal, job.job_id, self.settings.installation_start_wait_seconds)
        await to_thread.run_sync(self._require_running, principal, installation, job.job_id)
        return await to_thread.run_sync(self.sandboxes.call_tool, principal, job.job_id, name, arguments)

    def _call_running(self, principal: Principal, installation: Installation, name: str,
                      arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The call, on a server that runs; None when none does."""
        job = self.running(installation)
        if job is None or job.status != JobStatus.running:
            return None
        self._keep_alive(principal, job)
        return self.sandboxes.call_tool(principal, job.job_id, name, arguments)

    # --- remote servers -----------------------------------------------------------------------------

    async def _remote(self, action: str, installation: Installation, *call: Any) -> Any:
        from app import remote_mcp  # the SDK client loads with the first remote call, not before

        if installation.pending:
            raise Conflict(f"installation {installation.installation_id} waits for its user's sign-in (OAuth) "
                           f"to supply {', '.join(installation.pending)}")
        remote = Remote.model_validate(installation.target)
        values = {**installation.config, **await to_thread.run_sync(self.secret_values, installation)}
        try:
            url = remote_url(remote.url, remote.variables, values)
        except ConfigProblem as error:
            raise Unprocessable(str(error)) from error
        headers = remote_headers(remote.headers, values)
        timeout, allow_private = (self.settings.tool_call_timeout_seconds,
                                  self.settings.remote_mcp_allow_private_addresses)
        try:
            if action == "tools":
                return await remote_mcp.list_tools(url, headers, timeout=timeout, allow_private=allow_private)
            name, arguments = call
            return await remote_mcp.call_tool(url, headers, name, arguments, timeout=timeout,
                                              allow_private=allow_private)
        except remote_mcp.RemoteRefused as error:
            raise Forbidden(f"the remote server is not reachable from berth: {error}") from error
        except remote_mcp.RemoteFailed as error:
            raise BadGateway(str(error)) from error

