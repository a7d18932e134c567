"""The `mcp.test`, `mcp.run` and `tool.run` executors and the control actions of a live sandbox.

A sandbox job runs one MCP server (a `SandboxSession`) until the job ends: cancelled, expired
(the runner enforces the deadline, which a TTL change can move), or the server dies on its own
(the job then fails with the end of the server's stderr). While it runs, control messages reach
it through `LIVE`: list and call tools, stop/start/restart the server, change its TTL or env,
inspect its processes, and forward HTTP to a streamable-HTTP server.

A server given as a package (or as `npx …`/`uvx …`, which mean one: `app.contract.messages.
SandboxServer`) is installed first, outside the sandbox, by the worker's package cache
(`ctx.host.packages`), reporting `package` events; the sandbox then runs the installed entry point
with the version's files read-only. Its lease on the version is held until the server stops, so
the cache never evicts a version a server runs. The environment is the job's sealed `env`
(`ctx.secrets["env"]`: values never travel in the payload), read again at each (re)start.
"""

import asyncio
import base64
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import BaseModel, ValidationError

from app.contract.messages import (
    ControlErrorCode,
    ControlMessage,
    ProxyRequest,
    ProxyResponse,
    SandboxServer,
    SandboxUpdate,
    ToolCallArguments,
)
from app.contract.packages import PackageSpecError
from app.contract.policy import SandboxPolicy, SandboxRejected
from app.contract.signing import verify_proxy_request
from workers.concurrency import wait_first
from workers.executors.base import ExecutorError, JobContext
from workers.packages import InstalledPackage, InstallProgress, PackageInstallFailed, PackageRefused
from workers.sandbox import proxy as proxy_headers
from workers.sandbox.session import SandboxRefused, SandboxSession, SandboxStartFailed

MATRIXSHELL_SERVER = Path(__file__).resolve().parent.parent / "sandbox" / "matrixshell_server.py"
LIVENESS_SECONDS = 0.5
# The runner owns the deadline (it moves when a TTL changes); the session's own timer is only a
# backstop for a worker that lost track, so it is generous.
SESSION_TTL_BACKSTOP_SECONDS = 7 * 24 * 3600
# Up to this size the `running` event carries the listed tools in full; larger listings (events
# are stored items) are fetched from the server when asked for.
TOOL_DEFINITIONS_IN_EVENT_MAX_BYTES = 16_384
PROXY_NONCES = proxy_headers.SeenNonces()  # proxy tokens this worker has honoured


# Why a server did not start, as the user is told, and the code a control action answers with.
_START_FAILURES: tuple[tuple[type[Exception], str, ControlErrorCode], ...] = (
    (SandboxRejected, "sandbox refused: {}", "forbidden"),
    (SandboxRefused, "sandbox refused by this runtime: {}", "failed"),
    (PackageRefused, "package refused: {}", "forbidden"),
    (PackageInstallFailed, "the package did not install: {}", "failed"),
    (PackageSpecError, "the package cannot start: {}", "bad_request"),
    (SandboxStartFailed, "the MCP server did not start: {}", "failed"),
)
_START_ERRORS = tuple(kind for kind, _, _ in _START_FAILURES)


@dataclass
class LiveSandbox:
    ctx: JobContext
    spec: SandboxServer
    policy: SandboxPolicy
    session: SandboxSession | None = None
    installed: InstalledPackage | None = None  # the package version the server runs, leased
    state: str = "starting"  # starting, running, stopping, stopped, failed
    started_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def running_session(self) -> SandboxSession:
        """The session of a sandbox whose server runs (callers checked `state`)."""
        if self.session is None:
            raise ExecutorError(f"sandbox {self.ctx.job_id} is {self.state}, not running", code="not_running")
        return self.session

    @property
    def workdir(self) -> str:
        return str(Path(self.ctx.work_dir) / "sandbox")

    async def start(self) -> None:
        self.state = "starting"
        session = SandboxSession()
        try:
            argv, env, readonly = None, self._environment(), self.ctx.sandbox_tool_dirs
            package = self.spec.package
            if package is not None:
                if self.spec.command:  # before any download (a type no command runs is the cache's to refuse)
                    self.policy.check_command(self.spec.command)
                self.installed = await self._install()
                if self.installed is None:  # the job was stopped while the package installed
                    self.state = "stopped"
                    return
                argv, readonly = self.installed.argv, readonly + self.installed.readonly_dirs
                env = self.installed.env | package.environment(env)
            await session.start(self.spec.command, env, self.workdir, self.policy, transport=self.spec.transport,
                                readonly_dirs=readonly, allow_unisolated=self.ctx.allow_unisolated_sandboxes,
                                argv=argv)
        except _START_ERRORS as error:
            self.state = "failed"
            self._release_package()
            message, code = next((template.format(error), code) for kind, template, code in _START_FAILURES
                                 if isinstance(error, kind))
            # The failure says how the sandbox was (or would have been) confined, as `running` does.
            await self.ctx.emit("sandbox", "error", message, {"state": "failed", "isolation": session.isolation,
                                                               "limits": session.limits})
            raise ExecutorError(message, code=code) from error
        except BaseException:
            self._release_package()
            raise
        self.session, self.state, self.started_at = session, "running", time.time()
        tools = session.tools_at_start
        report = {"state": "running", "isolation": session.isolation, "limits": session.limits, "pid": session.pid,
                  "tools": [tool["name"] for tool in tools]}
        if self.installed is not None:
            report["package"] = str(self.installed.key)
        if len(json.dumps(tools)) <= TOOL_DEFINITIONS_IN_EVENT_MAX_BYTES:
            report["tool_definitions"] = tools  # lets a readiness wait answer without asking the server again
        await self.ctx.emit("sandbox", "running", f"server started with {len(tools)} tools", report)

    async def _install(self) -> InstalledPackage | None:
        """The package, installed outside the sandbox (or found cached) and leased; None when the
        job was stopped first."""
        packages, package = self.ctx.host.packages, self.spec.package
        assert package is not None
        if packages is None:
            raise PackageRefused("this runtime does not install packages")

        async def report(progress: InstallProgress) -> None:
            await self.ctx.emit("package", "ok" if progress.stage == "done" else "running", progress.message,
                                progress.as_event_data())

        install = asyncio.ensure_future(packages.ensure(package, report))
        await wait_first(install, self.ctx.cancelled.wait())
        if not install.done():  # stopped: the install goes on only for others waiting on it
            install.cancel()
            await asyncio.gather(install, return_exceptions=True)
            return None
        return install.result()

    async def stop(self, reason: str) -> None:
        was_running = self.state == "running"
        if was_running:
            self.state = "stopping"  # so the liveness check does not take this for a crash
        if self.session is not None:
            await self.session.stop()
            self.session = None
        self._release_package()
        if was_running:
            self.state = "stopped"
            await self.ctx.emit("sandbox", "ok", f"server stopped: {reason}", {"state": "stopped"})

    def _release_package(self) -> None:
        if self.installed is not None:
            self.installed.release()
            self.installed = None

    def _environment(self) -> dict[str, str]:
        """The server's environment: the job's secret `env` (opened from what the API sealed for
        this runtime; a control message may have replaced it since), and the shell's deny list."""
        env = self.ctx.secrets.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise SandboxRejected("the sandbox's env is not a map of names to strings")
        if self.spec.builtin == "matrixshell":
            return {**env, "BERTH_SHELL_DENYLIST": json.dumps(self.policy.command_denylist)}
        return dict(env)

    def server_died(self) -> bool:
        return self.state == "running" and self.session is not None and not self.session.alive


LIVE: dict[str, LiveSandbox] = {}  # job id -> the sandbox it runs on this worker


def _policy(ctx: JobContext) -> SandboxPolicy:
    policy = ctx.policy or SandboxPolicy()
    return policy.model_copy(update={"ttl_seconds": SESSION_TTL_BACKSTOP_SECONDS})


async def run_server(ctx: JobContext) -> dict:
    try:
        spec = SandboxServer.model_validate(ctx.payload)
    except ValidationError as error:
        raise ExecutorError(f"invalid sandbox payload: {_first_problem(error)}", code="bad_request") from error
    live = LiveSandbox(ctx, spec, _policy(ctx))
    Path(live.workdir).mkdir(parents=True, exist_ok=True)
    if spec.builtin == "matrixshell":
        shutil.copy(MATRIXSHELL_SERVER, Path(live.workdir) / MATRIXSHELL_SERVER.name)
    LIVE[ctx.job_id] = live
    try:
        await live.start()
        while not ctx.cancelled.is_set():
            try:
                await asyncio.wait_for(ctx.cancelled.wait(), LIVENESS_SECONDS)
            except TimeoutError:
                pass
            if live.server_died():
                session = live.running_session
                reason = session.stop_reason or "exited"
                live.state = "failed"
                await ctx.emit("sandbox", "error", f"server exited: {reason}",
                               {"state": "failed", "isolation": session.isolation, "limits": session.limits})
                raise ExecutorError(f"the MCP server exited on its own: {reason}")
        return {"state": "ended", "ran_seconds": round(time.time() - live.started_at, 3) if live.started_at else 0}
    finally:
        async with live.lock:
            await live.stop("the sandbox ended")
        LIVE.pop(ctx.job_id, None)


async def run_tool(ctx: JobContext) -> dict:
    """`tool.run`: one tool call on a sandbox running on this worker, as a job of its own."""
    live = LIVE.get(ctx.payload.get("session_id", ""))
    if live is None or live.state != "running":
        raise ExecutorError(f"sandbox session {ctx.payload.get('session_id')} is not running on this runtime")
    await ctx.emit("tool", "running", f"calling {ctx.payload['name']}")
    answer = await live.running_session.call_tool(ctx.payload["name"], ctx.payload.get("arguments", {}),
                                          timeout=max(ctx.expires_at - time.time(), 1))
    if not answer["ok"]:
        raise ExecutorError(answer.get("error", "the tool failed"))
    return answer["result"]


EXECUTORS = {"mcp.test": run_server, "mcp.run": run_server, "tool.run": run_tool}
LONG_LIVED = frozenset({"mcp.test", "mcp.run"})  # run until stopped: a stopping worker releases them at once


# --- control actions -------------------------------------------------------------------------


def _live(message: ControlMessage, *, running: bool = True) -> LiveSandbox:
    live = LIVE.get(message.job_id)
    if live is None or live.ctx.workspace_id != message.workspace_id:
        raise ExecutorError(f"sandbox {message.job_id} is not running on this runtime", code="not_running")
    if running and (live.state != "running" or live.session is None):
        raise ExecutorError(f"sandbox {message.job_id} is {live.state}, not running", code="not_running")
    return live


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _arguments(model: type[BaseModel], message: ControlMessage):
    try:
        return model.model_validate(message.arguments)
    except ValidationError as error:
        raise ExecutorError(f"invalid {message.action} arguments: {error.errors()[0]['msg']}",
                            code="bad_request") from error


async def list_tools(message: ControlMessage) -> dict:
    return {"tools": await _live(message).running_session.list_tools()}


async def call_tool(message: ControlMessage) -> dict:
    request = _arguments(ToolCallArguments, message)
    session = _live(message).running_session
    answer = await session.call_tool(request.name, request.arguments, timeout=request.timeout_seconds)
    result = answer.get("result", {})
    if not answer["ok"]:
        result = {**result, "error": answer.get("error", "the tool failed")}
    return {"ok": answer["ok"], "result": result}


async def inspect(message: ControlMessage) -> dict:
    live = _live(message, running=False)
    session = live.session
    return {"state": live.state, "isolation": session.isolation if session else None,
            "limits": session.limits if session else {},
            "pids": session.processes() if session else [], "rss_bytes": session.rss_bytes() if session else 0,
            "started_at": live.started_at}


async def stop_server(message: ControlMessage) -> dict:
    live = _live(message, running=False)
    async with live.lock:
        await live.stop("stopped on request")
    return {"state": live.state}


async def start_server(message: ControlMessage) -> dict:
    live = _live(message, running=False)
    async with live.lock:
        if live.state != "running":
            await live.start()
    return {"state": live.state}


async def restart_server(message: ControlMessage) -> dict:
    live = _live(message, running=False)
    async with live.lock:
        await live.stop("restarting")
        await live.start()
    return {"state": live.state}


async def update(message: ControlMessage) -> dict:
    live = _live(message, running=False)
    changes = _arguments(SandboxUpdate, message)  # a new env came as the message's secrets: the next start uses it
    if changes.expires_at is not None:
        live.ctx.extend(changes.expires_at)
    return {"state": live.state, "expires_at": live.ctx.expires_at}


async def proxy(message: ControlMessage) -> dict:
    live = _live(message)
    request = _arguments(ProxyRequest, message)
    now = time.time()
    try:
        claims = verify_proxy_request(live.ctx.proxy_key, request.token, now, message.job_id, request.method)
    except SandboxRejected as error:
        raise ExecutorError(str(error), code="forbidden") from error
    if not PROXY_NONCES.first_use(claims.nonce, claims.exp, now):
        raise ExecutorError("the proxy token was used already; a token is good for one request", code="forbidden")
    port = live.running_session.port
    if port is None:
        raise ExecutorError("this sandbox's server speaks stdio; nothing to proxy", code="bad_request")
    url = f"http://127.0.0.1:{port}/{request.path}" + (f"?{request.query}" if request.query else "")
    async with httpx.AsyncClient(timeout=20) as client:
        try:
            answer = await client.request(request.method, url, headers=proxy_headers.request_headers(request.headers),
                                          content=base64.b64decode(request.body_b64))
        except httpx.HTTPError as error:
            raise ExecutorError(f"the sandbox's server did not answer: {error}") from error
    headers = proxy_headers.response_headers(answer.headers.multi_items())
    return ProxyResponse(status=answer.status_code, headers=headers,
                         body_b64=base64.b64encode(answer.content).decode()).model_dump()


CONTROL_HANDLERS = {
    "tools.list": list_tools,
    "tools.call": call_tool,
    "sandbox.inspect": inspect,
    "sandbox.stop": stop_server,
    "sandbox.start": start_server,
    "sandbox.restart": restart_server,
    "sandbox.update": update,
    "proxy": proxy,
}
