"""One sandboxed MCP server and the `mcp` client session the worker talks to it through.

The SDK's transports and `ClientSession` hold anyio task groups that must be entered and left
by one task, so a session lives in a runner task of its own: it spawns the server, connects,
then waits for stop(), the TTL or the server's death, and tears everything down. Callers use
list_tools()/call_tool() from any task of the same event loop.
"""

import asyncio
import os
import signal
import socket
import tempfile
from contextlib import AsyncExitStack, asynccontextmanager
from subprocess import DEVNULL
from typing import Any

import anyio
import jsonschema
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from workers.sandbox.isolation import Launch, build_launch, claim_sandbox_uid, prepare_workdir, release_sandbox_uid
from app.contract.policy import SandboxPolicy, SandboxRejected

STDERR_TAIL_BYTES = 2000
LIVENESS_POLL_SECONDS = 0.5
GRACE_SECONDS = 2.0


class SandboxStartFailed(Exception):
    """The server did not come up; the message carries the end of its stderr."""


class SandboxNotRunning(Exception):
    """The session was stopped or its server died; the message says why."""


class SandboxSession:
    def __init__(self) -> None:
        self.isolation: str | None = None  # "bubblewrap" or "rlimits"
        self.pid: int | None = None  # the spawned process: bwrap, or the server itself
        self.workdir: str | None = None
        self.port: int | None = None  # where an http-transport server listens (on the worker's loopback)
        self.stop_reason: str | None = None
        self.tools_at_start: list[dict] = []  # what the server listed when it came up
        self._client: ClientSession | None = None
        # Tool name -> input schema as last listed, and its jsonschema validator, made on the
        # tool's first call: checking every schema at start delayed a server's readiness.
        self._schemas: dict[str, dict] = {}
        self._validators: dict[str, Any] = {}
        self._runner: asyncio.Task | None = None
        self._stop_requested = asyncio.Event()
        self._stderr = tempfile.TemporaryFile("w+")
        self._uid: int | None = None
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
    ) -> None:
        """Launch the server confined by `policy` and initialize an MCP session with it.

        Raises SandboxRejected for a command or transport the policy does not allow, and
        SandboxStartFailed when the server does not come up within `start_timeout`.
        """
        if self._runner is not None:
            raise RuntimeError("a SandboxSession starts once; make a new one")
        argv = policy.check_command(start_command)
        if transport not in ("stdio", "http"):
            raise SandboxRejected(f"unknown transport {transport!r}: use stdio or http")
        if transport == "http" and not policy.network:
            # Without a network namespace shared with the worker there is no port to reach.
            raise SandboxRejected("the http transport needs a policy with network access; use stdio")
        port = self.port = _free_port() if transport == "http" else None
        self.workdir = os.path.abspath(workdir)
        self._uid = claim_sandbox_uid()
        try:
            prepare_workdir(self.workdir, self._uid)
            launch = build_launch(argv, env | ({"PORT": str(port)} if port else {}), workdir, policy, self._uid,
                                  readonly_dirs)
        except BaseException:
            release_sandbox_uid(self._uid)
            raise
        self.isolation = launch.isolation
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
        self._schemas, self._validators = {tool.name: tool.input_schema for tool in tools}, {}
        return [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema} for t in tools]

    async def call_tool(self, name: str, arguments: dict | None = None, timeout: float = 60.0) -> dict:
        """Call a tool. Never raises for a failure: {"ok": False, "error": ...} says what went wrong,
        with the server's "result" when it answered with a tool error."""
        client = self._client
        if client is None:
            return _failure(f"sandbox is not running: {self.stop_reason}")
        arguments = arguments or {}
        validator = self._validator_for(name)
        problem = validator and jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if problem:
            where = "/".join(str(part) for part in problem.absolute_path) or "arguments"
            return _failure(f"invalid arguments for {name}: {where}: {problem.message}")
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

    def _validator_for(self, name: str) -> Any:
        """None for a tool not listed or with a broken schema: the server judges those calls."""
        if name not in self._validators:
            schema = self._schemas.get(name)
            self._validators[name] = _validator(schema) if schema is not None else None
        return self._validators[name]

    async def stop(self) -> None:
        """Stop the server and everything it started; safe to call more than once."""
        if self._runner is None:
            return
        self._stop_requested.set()
        await asyncio.shield(self._runner)

    def processes(self) -> list[int]:
        """Pids of the spawned process and all its descendants."""
        return _process_tree(self.pid) if self.pid else []

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree."""
        return sum(_rss_bytes(pid) for pid in self.processes())

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
                self._tree_at_stop = _identities(self.processes())
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
            release_sandbox_uid(self._uid)
            self._final_stderr = self._stderr_tail()
            self._stderr.close()

    @asynccontextmanager
    async def _stdio(self, launch: Launch):
        params = StdioServerParameters(command=launch.argv[0], args=launch.argv[1:], env=launch.env, cwd=launch.cwd)
        async with stdio_client(params, errlog=self._stderr) as streams:
            self.pid = self._find_spawned_pid()
            yield streams

    @asynccontextmanager
    async def _http(self, launch: Launch, port: int, start_timeout: float):
        process = await anyio.open_process(
            launch.argv, env=launch.env, cwd=launch.cwd, stdin=DEVNULL, stdout=self._stderr, stderr=self._stderr,
            start_new_session=True,
        )
        self.pid = process.pid
        try:
            with anyio.fail_after(start_timeout):
                await _wait_for_port(port, process)
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
        if isinstance(exc, TimeoutError):
            return SandboxStartFailed(f"server did not initialize within {start_timeout:g}s: {self._stderr_tail()}")
        if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            return SandboxStartFailed(f"server exited during start: {self._stderr_tail()}")
        return SandboxStartFailed(f"server did not start ({type(exc).__name__}: {exc}): {self._stderr_tail()}")

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
        log = os.fstat(self._stderr.fileno())
        for pid in _children(os.getpid()):
            try:
                stderr = os.stat(f"/proc/{pid}/fd/2")
            except OSError:
                continue
            if (stderr.st_dev, stderr.st_ino) == (log.st_dev, log.st_ino):
                return pid
        return None

    def _server_running(self) -> bool:
        return self.pid is not None and _running(self.pid)

    def _stderr_tail(self) -> str:
        if self._stderr.closed:
            return self._final_stderr
        fd = self._stderr.fileno()
        size = os.fstat(fd).st_size
        # pread leaves the offset alone, which the server shares for its writes.
        tail = os.pread(fd, STDERR_TAIL_BYTES, max(0, size - STDERR_TAIL_BYTES))
        return tail.decode(errors="replace").strip() or "(no output on stderr)"

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
        with anyio.move_on_after(GRACE_SECONDS):
            while survivors := self._survivors():
                for pid in survivors:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                await anyio.sleep(0.01)

    def _survivors(self) -> set[int]:
        still_there = {pid for pid, started in self._tree_at_stop if _identity(pid) == (pid, started)}
        return still_there | (_processes_of_uid(self._uid) if self._uid is not None else set())


def _failure(message: str) -> dict:
    return {"ok": False, "error": message}


def _validator(schema: dict) -> Any:
    """A validator for a tool's input schema; None for a broken schema (the server judges)."""
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError:
        return None
    return validator_class(schema)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _wait_for_port(port: int, process) -> None:
    while True:
        if process.returncode is not None:
            raise SandboxStartFailed(f"server exited with status {process.returncode}")
        try:
            connection = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            await anyio.sleep(0.05)
        else:
            await connection.aclose()
            return


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1]), or None."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _running(pid: int) -> bool:
    return _identity(pid) is not None


def _identity(pid: int) -> tuple[int, str] | None:
    """A running process as (pid, start time): a reused pid is another process."""
    fields = _stat_fields(pid)
    return (pid, fields[19]) if fields is not None and fields[0] != "Z" else None


def _identities(pids: list[int]) -> set[tuple[int, str]]:
    return {identity for pid in pids if (identity := _identity(pid))}


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _children(parent: int) -> list[int]:
    return [pid for pid in _all_pids() if (fields := _stat_fields(pid)) and int(fields[1]) == parent]


def _process_tree(root: int) -> list[int]:
    parents = {pid: int(fields[1]) for pid in _all_pids() if (fields := _stat_fields(pid))}
    tree = [root] if root in parents else []
    for pid in tree:  # grows while iterating: breadth-first
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def _processes_of_uid(uid: int) -> set[int]:
    pids = set()
    for pid in _all_pids():
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid and _running(pid):
                pids.add(pid)
        except FileNotFoundError:
            pass
    return pids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
