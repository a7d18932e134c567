"""A real SSH server on loopback for the infra SSH tests and benchmark.

`SshTestServer` is an `asyncssh` server on 127.0.0.1 (a free port) with a generated host key and
one authorised client key. It runs each exec request for real, as `/bin/sh -c <command>` in its
own directory (what sshd does with a POSIX login shell), relays signals the client sends to the
command's process group, kills the command when its channel closes, and opens `direct-tcpip`
channels (local port forwards) to loopback ports. It records what it saw, so tests can assert
that nothing connected, which command arrived byte for byte, and how each one ended.

    async with SshTestServer(tmp_path) as server:
        server.host_entry()           # an inventory host for it (known_hosts pin)
        server.client_private_key     # the authorised client key, OpenSSH text

`ThreadedSshServer` runs it on a thread of its own for tests that are not async (the local stack).
"""

import asyncio
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

USER = "operator"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class CommandRecord:
    command: str  # exactly as the client sent it
    returncode: int | None = None  # negative: ended by that signal
    signals: list[str] = field(default_factory=list)  # as the client sent them (TERM, KILL, ...)
    channel_closed_first: bool = False  # the client closed the channel while the command still ran
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class _CommandSession(asyncssh.SSHServerSession):
    def __init__(self, server: "SshTestServer"):
        self._server = server
        self._channel: Any = None
        self._record: CommandRecord | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None

    def connection_made(self, chan: Any) -> None:
        self._channel = chan

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        self._record = CommandRecord(command)
        self._server.commands.append(self._record)
        return True

    def session_started(self) -> None:
        if self._record is not None:
            self._task = asyncio.ensure_future(self._run(self._record))

    def eof_received(self) -> bool:
        return True  # the command reads no input; keep the channel open for its output

    def signal_received(self, signal_name: str) -> None:
        if self._record is not None:
            self._record.signals.append(signal_name)
        self._kill(getattr(signal, f"SIG{signal_name}", signal.SIGTERM))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._record is not None and not self._record.finished.is_set():
            self._record.channel_closed_first = True
        self._kill(signal.SIGKILL)

    def _kill(self, signum: int) -> None:
        if self._process is not None and self._process.returncode is None:
            try:
                os.killpg(self._process.pid, signum)
            except ProcessLookupError:
                pass

    async def _relay(self, stream: asyncio.StreamReader, write: Any) -> None:
        while chunk := await stream.read(65536):
            if not self._channel.is_closing():
                write(chunk)

    async def _run(self, record: CommandRecord) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", record.command, cwd=self._server.root, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        assert self._process.stdout is not None and self._process.stderr is not None
        if self._channel.is_closing():  # closed while the command was starting
            self._kill(signal.SIGKILL)
        try:
            await asyncio.gather(self._relay(self._process.stdout, self._channel.write),
                                 self._relay(self._process.stderr, self._channel.write_stderr))
            record.returncode = await self._process.wait()
        finally:
            record.finished.set()
        if self._channel.is_closing():
            return
        if record.returncode < 0:
            self._channel.exit_with_signal(signal.Signals(-record.returncode).name.removeprefix("SIG"))
        else:
            self._channel.exit(record.returncode)


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: "SshTestServer"):
        self._owner = owner

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._owner.connections += 1
        self._owner.open_connections.append(conn)

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is required

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == USER and key.public_data == self._owner.client_key.public_data

    def auth_completed(self) -> None:
        self._owner.authenticated += 1

    def session_requested(self) -> _CommandSession:
        return _CommandSession(self._owner)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        self._owner.forwards.append((dest_host, dest_port))
        return dest_host in LOOPBACK  # True: asyncssh relays the channel to dest_host:dest_port


class SshTestServer:
    def __init__(self, root: Path):
        self.root = root  # where commands run
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.wrong_host_key = asyncssh.generate_private_key("ssh-ed25519")  # a key this server does not have
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.stranger_key = asyncssh.generate_private_key("ssh-ed25519")  # a client key it does not accept
        self.connections = 0  # TCP connections accepted
        self.authenticated = 0
        self.commands: list[CommandRecord] = []
        self.forwards: list[tuple[str, int]] = []  # direct-tcpip destinations requested
        self.open_connections: list[asyncssh.SSHServerConnection] = []
        self.port = 0
        self._acceptor: Any = None

    async def __aenter__(self) -> "SshTestServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self), "127.0.0.1", 0, server_host_keys=[self.host_key], encoding=None,
            allow_pty=False, agent_forwarding=False, x11_forwarding=False)
        self.port = self._acceptor.get_port()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.drop_connections()
        self._acceptor.close()
        await self._acceptor.wait_closed()

    def drop_connections(self) -> None:
        """Close every client connection from the server's side (a host going away)."""
        for connection in self.open_connections:
            connection.close()
        self.open_connections.clear()

    # --- what a client needs --------------------------------------------------------------------

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.export_public_key().decode().strip()}"

    @property
    def fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    @property
    def wrong_known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.wrong_host_key.export_public_key().decode().strip()}"

    @property
    def wrong_fingerprint(self) -> str:
        return self.wrong_host_key.get_fingerprint("sha256")

    @property
    def client_private_key(self) -> str:
        return self.client_key.export_private_key().decode()

    @property
    def stranger_private_key(self) -> str:
        return self.stranger_key.export_private_key().decode()

    def host_entry(self, name: str = "test-host", **overrides: Any) -> dict[str, Any]:
        """An inventory host entry for this server, pinned by its known_hosts line."""
        return {"name": name, "address": "127.0.0.1", "port": self.port, "user": USER, "labels": ["test"],
                "host_key": self.known_hosts_line, "client_key": "secretsmanager:berth/test-host", **overrides}


class ThreadedSshServer:
    """The same server on an event loop of its own thread, for tests and benchmarks that are not
    async themselves (the local stack's end-to-end tests): `with ThreadedSshServer(root) as ssh:`,
    then `ssh.server` is the SshTestServer, its records (`commands`, `connections`, ...) read from
    the caller's thread; `ssh.call(fn)` runs `fn` on the server's loop (to drop connections, say)."""

    def __init__(self, root: Path):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ssh-test-server", daemon=True)
        self.server = SshTestServer(root)

    def __enter__(self) -> "ThreadedSshServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.__aexit__(None, None, None), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    def call(self, fn: Any) -> Any:
        """`fn()` run on the server's loop, its result returned here."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)
