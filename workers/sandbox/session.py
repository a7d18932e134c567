"""One sandboxed MCP server and the `mcp` client session the worker talks to it through.

The SDK's transports and `ClientSession` hold anyio task groups that must be entered and left
by one task, so a session lives in a runner task of its own: it spawns the server, connects,
then waits for stop(), the TTL or the server's death, and tears everything down. Callers use
list_tools()/call_tool() from any task of the same event loop. (Past 400 lines: the runner task
owns the server, the client session and their teardown together; isolation, networking and
argument checks live in modules of their own.)
"""

import asyncio
import os
import signal
import socket
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from subprocess import DEVNULL
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from app.contract.policy import SandboxPolicy, SandboxRejected
from workers.sandbox import cgroups, processes
from workers.sandbox.argument_check import ArgumentChecks, CheckTimedOut
from workers.sandbox.isolation import (
    Launch,
    bubblewrap_available,
    build_launch,
    claim_sandbox_uid,
    isolation_driver,
    prepare_workdir,
    release_sandbox_uid,
)
from workers.sandbox.network import NetworkUnavailable, SandboxNetwork, open_network
from workers.sandbox.stderr import OFFLINE_ENVIRONMENT, STDERR_KEEP_BYTES, StderrTail, offline_hint

STDERR_TAIL_BYTES = 2000
LIVENESS_POLL_SECONDS = 0.5
GRACE_SECONDS = 2.0
ARGUMENT_CHECKS = ArgumentChecks()  # one pool of checker processes for the worker's sandboxes


class SandboxStartFailed(Exception):
    """The server did not come up; the message carries the end of its stderr."""


class SandboxNotRunning(Exception):
    """The session was stopped or its server died; the message says why."""


class SandboxRefused(Exception):
    """This host will not run the sandbox as asked (no isolation, no network namespace); the
    message says why and what the runtime's owner can do."""


class SandboxSession:
    def __init__(self) -> None:
        self.isolation: str | None = None  # "bubblewrap", "rlimits" or (refused) "none"
        self.limits: dict[str, Any] = {}  # what confines the sandbox, as reported to the API
        self.pid: int | None = None  # the spawned process: bwrap, or the server itself
        self.workdir: str | None = None
        self.port: int | None = None  # where the worker reaches an http-transport server (its loopback)
        self.stop_reason: str | None = None
        self.tools_at_start: list[dict] = []  # what the server listed when it came up
        self._client: ClientSession | None = None
        # Tool name -> input schema as last listed (checked off the event loop, see argument_check).
        self._schemas: dict[str, dict] = {}
        self._runner: asyncio.Task | None = None
        self._stop_requested = asyncio.Event()
        self._stderr: StderrTail | None = None
        self._uid: int | None = None
        self._network: SandboxNetwork | None = None
        self._cgroup: cgroups.SandboxCgroup | None = None
        self._offline = False
        self._tree_at_stop: set[tuple[int, str]] = set()
        self._final_stderr = ""

    @property
    def alive(self) -> bool:
        return self._client is not None

    async def start(
        self,
        start_command: str,
        env: dict[str, str],
        workdir: str,
        policy: SandboxPolicy,
        transport: str = "stdio",
        start_timeout: float = 60.0,
        readonly_dirs: tuple[str, ...] = (),
        allow_unisolated: bool = False,
        argv: list[str] | None = None,
    ) -> None:
        """Launch the server confined by `policy` and initialize an MCP session with it.

        `start_command` is the user's, always checked against the policy's command lists; the
        server it names runs, unless the worker gives the `argv` to run in its place: an installed
        package's entry point, which the worker built from a validated package (`npx …` in the
        user's words), is not a user's command line and is run as given, by path.

        Raises SandboxRejected for a command or transport the policy does not allow,
        SandboxRefused when this host cannot confine it as required (no bubblewrap, unless
        `allow_unisolated`; no network namespace for a networked sandbox), and
        SandboxStartFailed when the server does not come up within `start_timeout`.
        """
        if self._runner is not None:
            raise RuntimeError("a SandboxSession starts once; make a new one")
        command_argv = policy.check_command(start_command)
        argv = list(argv) if argv is not None else command_argv
        if transport not in ("stdio", "http"):
            raise SandboxRejected(f"unknown transport {transport!r}: use stdio or http")
        if transport == "http" and not policy.network:
            # The worker reaches the server through the sandbox's network namespace.
            raise SandboxRejected("the http transport needs a policy with network access; use stdio")
        isolated = bubblewrap_available()
        self.isolation = isolation_driver(allow_unisolated)
        if self.isolation == "none":
            raise SandboxRefused(
                "this runtime cannot isolate sandboxes (bubblewrap is not installed), so it runs none: install "
                "bubblewrap, or let its owner accept unisolated sandboxes (BERTH_WORKER_ALLOW_UNISOLATED_SANDBOXES)")
        port = self.port = _free_port() if transport == "http" else None
        self.workdir = os.path.abspath(workdir)
        self._offline = isolated and not policy.network
        if self._offline:
            env = OFFLINE_ENVIRONMENT | env
        self._uid = claim_sandbox_uid()
        try:
            prepare_workdir(self.workdir, self._uid)
            # pids.max also counts bubblewrap and its init, which RLIMIT_NPROC does not see.
            self._cgroup = cgroups.create(f"sandbox-{uuid.uuid4().hex[:16]}", policy.sandbox_memory_mb,
                                          policy.max_processes + 2, policy.cpu_cores)
            if isolated and policy.network:
                self._network = await open_network(port)
            launch = build_launch(argv, env | ({"PORT": str(port)} if port else {}), workdir, policy, self._uid,
                                  readonly_dirs, network=self._network, cgroup=self._cgroup)
        except BaseException as error:
            await self._release()
            if isinstance(error, NetworkUnavailable):
                raise SandboxRefused(f"network access was asked for: {error}") from None
            raise
        self.limits = self._limits_in_force(policy)
        self._stderr = StderrTail()
        ready = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(launch, port, policy.ttl_seconds, start_timeout, ready))
        try:
            await ready
        except asyncio.CancelledError:
            self._runner.cancel()  # the runner cleans up whatever it had started
            raise

    async def list_tools(self) -> list[dict]:
        """The server's tools as name, description and input_schema."""
        if self._client is None:
            raise SandboxNotRunning(f"sandbox is not running: {self.stop_reason}")
        tools = (await self._client.list_tools()).tools
        self._schemas = {tool.name: tool.input_schema for tool in tools}
        return [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema} for t in tools]

    async def call_tool(self, name: str, arguments: dict | None = None, timeout: float = 60.0) -> dict:
        """Call a tool. Never raises for a failure: {"ok": False, "error": ...} says what went wrong,
        with the server's "result" when it answered with a tool error."""
        client = self._client
        if client is None:
            return _failure(f"sandbox is not running: {self.stop_reason}")
        arguments = arguments or {}
        schema = self._schemas.get(name)  # a tool not listed: the server judges the call
        if schema is not None:
            try:
                problem = await ARGUMENT_CHECKS.problem(schema, arguments)
            except CheckTimedOut as error:
                return _failure(f"invalid arguments for {name}: {error} against the tool's input schema "
                                "(a pattern that backtracks without end?); the call was refused")
            except OSError as error:  # the checker process died
                return _failure(f"the arguments for {name} could not be checked ({error}); the call was refused")
            if problem:
                return _failure(f"invalid arguments for {name}: {problem}")
        try:
            result = await client.call_tool(name, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED or not self._server_running():
                return _failure(f"sandbox server exited: {self._stderr_tail()}")
            return _failure(f"{name} failed: {exc.message}")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return _failure(f"sandbox is not running: {self.stop_reason or 'connection closed'}")
        except Exception as exc:  # e.g. an answer the SDK cannot parse: still a result, as promised
            return _failure(f"{name} failed: {type(exc).__name__}: {exc}")
        dumped = result.model_dump(
            mode="json", by_alias=True, exclude_none=True, include={"content", "structured_content", "is_error"}
        )
        if result.is_error:
            text = " ".join(block.text for block in result.content if block.type == "text")
            return {"ok": False, "error": text or f"{name} reported an error", "result": dumped}
        return {"ok": True, "result": dumped}

    async def stop(self) -> None:
        """Stop the server and everything it started; safe to call more than once."""
        if self._runner is None:
            return
        self._stop_requested.set()
        await asyncio.shield(self._runner)

    def processes(self) -> list[int]:
        """Pids of the spawned process and all its descendants."""
        return processes.process_tree(self.pid) if self.pid else []

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree."""
        return sum(processes.rss_bytes(pid) for pid in self.processes())

    @property
    def stderr_bytes(self) -> tuple[int, int]:
        """(bytes of stderr kept, bytes the server wrote in all)."""
        return (self._stderr.kept_bytes, self._stderr.total_bytes) if self._stderr else (0, 0)

    async def _run(
        self, launch: Launch, port: int | None, ttl: float, start_timeout: float, ready: asyncio.Future
    ) -> None:
        try:
            async with AsyncExitStack() as stack:
                transport = self._http(launch, port, start_timeout) if port else self._stdio(launch)
                read_stream, write_stream = await stack.enter_async_context(transport)
                client = await stack.enter_async_context(ClientSession(read_stream, write_stream))
                with anyio.fail_after(start_timeout):
                    await client.initialize()
                    self._client = client
                    self.tools_at_start = await self.list_tools()
                ready.set_result(None)
                self.stop_reason = await self._wait_for_end(ttl)
                self._client = None  # no new calls while the server goes down
                self._tree_at_stop = processes.identities(self.processes())
        except Exception as exc:
            if not ready.done():
                ready.set_exception(self._start_failure(exc, start_timeout))
            self.stop_reason = self.stop_reason or f"failed: {exc}"
        finally:
            self._client = None
            if not ready.done():
                ready.cancel()
            with anyio.CancelScope(shield=True):
                await self._kill_remaining()
                await self._release()
            self._final_stderr = self._stderr_tail()
            if self._stderr:
                self._stderr.close()

    async def _release(self) -> None:
        """Give back what start() took besides processes: uid, network namespace, cgroup."""
        release_sandbox_uid(self._uid)
        if self._network is not None:
            await self._network.close()
        if self._cgroup is not None:
            await asyncio.to_thread(self._cgroup.remove)

    def _limits_in_force(self, policy: SandboxPolicy) -> dict[str, Any]:
        isolated = self.isolation == "bubblewrap"
        limits: dict[str, Any] = {
            "memory_mb_per_process": policy.memory_mb, "cpu_seconds_per_process": policy.cpu_seconds,
            "processes": policy.max_processes, "open_files_per_process": policy.max_open_files,
            "file_mb": policy.max_file_mb, "sandbox_disk_mb": policy.disk_mb if isolated else None,
            "stderr_kept_bytes": STDERR_KEEP_BYTES,
            "network": "egress-only" if self._network else "none" if isolated else "host",
            "cgroup": None,
        }
        if self._cgroup is not None:
            limits["cgroup"] = {"memory_mb": policy.sandbox_memory_mb, "pids": policy.max_processes + 2,
                                "cpu_cores": policy.cpu_cores}
        else:
            limits["cgroup_unavailable"] = cgroups.unavailable_reason() or "the sandbox's cgroup could not be made"
        return limits

    @asynccontextmanager
    async def _stdio(self, launch: Launch):
        params = StdioServerParameters(command=launch.argv[0], args=launch.argv[1:], env=launch.env, cwd=launch.cwd)
        assert self._stderr is not None
        async with stdio_client(params, errlog=self._stderr.writer) as streams:
            self.pid = self._find_spawned_pid()
            self._stderr.spawned()
            yield streams

    @asynccontextmanager
    async def _http(self, launch: Launch, port: int, start_timeout: float):
        assert self._stderr is not None
        process = await anyio.open_process(
            launch.argv, env=launch.env, cwd=launch.cwd, stdin=DEVNULL, stdout=self._stderr.writer,
            stderr=self._stderr.writer, start_new_session=True,
        )
        self.pid = process.pid
        self._stderr.spawned()
        try:
            with anyio.fail_after(start_timeout):
                await _wait_for_port(port, process, self._network)
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as streams:
                yield streams
        finally:
            with anyio.CancelScope(shield=True):
                await terminate_posix_process_tree(process, GRACE_SECONDS)
                await process.aclose()

    def _start_failure(self, exc: Exception, start_timeout: float) -> SandboxStartFailed:
        while isinstance(exc, ExceptionGroup):
            exc = exc.exceptions[0]
        # The transport is already shut down here, so the process is gone whatever happened.
        stderr = self._stderr_tail()
        if self._offline and (hint := offline_hint(stderr)):
            return SandboxStartFailed(f"{hint}: {stderr}")
        if isinstance(exc, TimeoutError):
            return SandboxStartFailed(f"server did not initialize within {start_timeout:g}s: {stderr}")
        if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            return SandboxStartFailed(f"server exited during start: {stderr}")
        return SandboxStartFailed(f"server did not start ({type(exc).__name__}: {exc}): {stderr}")

    async def _wait_for_end(self, ttl: float) -> str:
        deadline = asyncio.get_running_loop().time() + ttl
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return f"ttl of {ttl:g}s expired"
            try:
                await asyncio.wait_for(self._stop_requested.wait(), min(remaining, LIVENESS_POLL_SECONDS))
                return "stopped"
            except TimeoutError:
                if not self._server_running():
                    return f"server exited: {self._stderr_tail()}"

    def _find_spawned_pid(self) -> int | None:
        """The SDK does not expose the process it spawned: find our child whose stderr is our log
        (None when it already died; initialize() then fails and reports its stderr)."""
        assert self._stderr is not None
        log = os.fstat(self._stderr.writer.fileno())
        for pid in processes.children(os.getpid()):
            try:
                stderr = os.stat(f"/proc/{pid}/fd/2")
            except OSError:
                continue
            if (stderr.st_dev, stderr.st_ino) == (log.st_dev, log.st_ino):
                return pid
        return None

    def _server_running(self) -> bool:
        return self.pid is not None and processes.running(self.pid)

    def _stderr_tail(self) -> str:
        if self._final_stderr or self._stderr is None:
            return self._final_stderr or "(no output on stderr)"
        return self._stderr.text(STDERR_TAIL_BYTES)

    async def _kill_remaining(self) -> None:
        """SIGKILL what outlived the transport's shutdown, and wait until it is gone: the
        process group (forks that outlived their parent stay in it), the tree as it was at stop
        (also what left the group) and, with a sandbox uid, every process of that uid.
        Bounded: a process stuck in the kernel cannot hang stop()."""
        if self.pid:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._cgroup is not None:
            self._cgroup.kill_all()
        with anyio.move_on_after(GRACE_SECONDS):
            while survivors := self._survivors():
                for pid in survivors:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                await anyio.sleep(0.01)

    def _survivors(self) -> set[int]:
        still_there = {pid for pid, started in self._tree_at_stop if processes.identity(pid) == (pid, started)}
        return still_there | (processes.processes_of_uid(self._uid) if self._uid is not None else set())


def _failure(message: str) -> dict:
    return {"ok": False, "error": message}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _wait_for_port(port: int, process, network: SandboxNetwork | None) -> None:
    """Until the server listens. In a namespace of its own, pasta accepts on the host side
    before the server listens inside, so the namespace's socket table is what tells."""
    while True:
        if process.returncode is not None:
            raise SandboxStartFailed(f"server exited with status {process.returncode}")
        if network is not None:
            if network.listening(port):
                return
            await anyio.sleep(0.05)
            continue
        try:
            connection = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            await anyio.sleep(0.05)
        else:
            await connection.aclose()
            return
