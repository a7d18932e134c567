"""One rendered command on an open connection, bounded by the action's timeout and output cap,
and stopped at once when its job is cancelled.

Output is read to the end even past the cap (the command would otherwise block on a full pipe
and never exit); what is past the cap is counted and hashed, not kept.
"""

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncssh

# After the TERM signal, how long the command has to end before its channel is closed on it.
STOP_GRACE_SECONDS = 1.0
READ_CHUNK_BYTES = 65536


@dataclass
class Capture:
    """One output stream: the first `cap` bytes kept, all of it counted and hashed."""

    cap: int
    kept: bytearray = field(default_factory=bytearray)
    total: int = 0
    _digest: Any = field(default_factory=hashlib.sha256)

    def add(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.total += len(chunk)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


@dataclass
class CommandRun:
    ended: Literal["exited", "signal", "timeout", "disconnected", "cancelled"]
    exit_status: int | None
    exit_signal: str | None
    stdout: Capture
    stderr: Capture
    seconds: float


async def _drain(reader: asyncssh.SSHReader, capture: Capture) -> None:
    while chunk := await reader.read(READ_CHUNK_BYTES):
        capture.add(chunk)


async def run_command(conn: asyncssh.SSHClientConnection, command: str, *, timeout: float, output_cap: int,
                      cancelled: asyncio.Event) -> CommandRun:
    started = time.monotonic()
    stdout, stderr = Capture(output_cap), Capture(output_cap)
    process = await conn.create_process(command, stdin=asyncssh.DEVNULL, encoding=None)

    async def collect() -> None:
        await asyncio.gather(_drain(process.stdout, stdout), _drain(process.stderr, stderr))
        await process.wait_closed()

    collecting = asyncio.ensure_future(collect())
    stop = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait({collecting, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    ended: Literal["exited", "signal", "timeout", "disconnected", "cancelled"]
    if not collecting.done():
        ended = "cancelled" if cancelled.is_set() else "timeout"
        await _stop(process, collecting)
    elif (error := collecting.exception()) is not None:
        if not isinstance(error, asyncssh.Error | OSError):
            raise error
        ended = "disconnected"  # the connection went away mid-read
    elif process.exit_signal is not None:
        ended = "signal"
    elif process.exit_status is not None:
        ended = "exited"
    else:
        ended = "disconnected"  # the channel closed without saying how the command ended
    signal_name = process.exit_signal[0] if ended == "signal" and process.exit_signal else None
    return CommandRun(ended=ended, exit_status=process.exit_status if ended == "exited" else None,
                      exit_signal=signal_name, stdout=stdout, stderr=stderr, seconds=time.monotonic() - started)


async def _stop(process: asyncssh.SSHClientProcess, collecting: asyncio.Future) -> None:
    """Send TERM over the channel (a server that honours signal requests delivers it to the
    program itself, since the command starts with `exec`), then close the channel. What a server
    that ignores the signal does with the command when its channel closes is up to the server: the
    test server kills it; sshd without a terminal leaves it until it next writes to its output."""
    try:
        process.send_signal("TERM")
    except (OSError, asyncssh.Error):
        pass  # the channel is already gone
    await asyncio.wait({collecting}, timeout=STOP_GRACE_SECONDS)
    process.close()
    collecting.cancel()
    await asyncio.gather(collecting, return_exceptions=True)
