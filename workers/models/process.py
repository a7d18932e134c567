"""A serving engine's OS process, which must never outlive the job that started it.

It runs in a process group of its own, so stopping it (SIGTERM, then SIGKILL after a grace) reaches
whatever it started too (vLLM's tensor-parallel workers). Where util-linux's `setpriv` is
available it is started through `setpriv --pdeathsig KILL`, so the kernel kills it if the worker
dies without cleaning up (SIGKILL, OOM); and an `atexit` hook kills every engine still running
when the worker's interpreter exits. Its output is kept in memory, the last lines only: enough to
say why it failed, without a log file that grows for as long as the model is served.
"""

import asyncio
import atexit
import collections
import contextlib
import functools
import os
import shutil
import signal
import subprocess

LOG_LINES = 200
TAIL_CHARS = 4000
STOP_GRACE_SECONDS = 5.0
_READ_BYTES = 65536

_running: set["EngineProcess"] = set()


class EngineProcess:
    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self._env = env
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)

    async def start(self) -> None:
        """Start it; OSError if its command cannot be executed."""
        self._process = await asyncio.create_subprocess_exec(
            *_pdeathsig_prefix(), *self.argv, env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        _running.add(self)
        self._reader = asyncio.create_task(self._read_output(self._process.stdout), name=f"engine-log-{self.pid}")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def wait(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop its whole process group: SIGTERM, then SIGKILL for whatever is left after `grace`."""
        if self._process is None:
            return
        if self.alive:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), grace)
        self._signal(signal.SIGKILL)  # its children, even when the leader already exited
        await self._process.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 1.0)
        _running.discard(self)

    def kill(self) -> None:
        """SIGKILL the group now (no waiting: for the exit hook)."""
        if self._process is not None:
            self._signal(signal.SIGKILL)

    def tail(self, chars: int = TAIL_CHARS) -> str:
        text = "\n".join(self._lines)
        return text[-chars:]

    def _signal(self, signum: int) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)  # the group id is the leader's pid (a new session)

    async def _read_output(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        partial = ""
        while chunk := await stream.read(_READ_BYTES):
            # Progress bars redraw with \r: each redraw counts as a line, the last one is kept.
            parts = (partial + chunk.decode(errors="replace")).replace("\r", "\n").split("\n")
            partial = parts.pop()
            self._lines.extend(part for part in parts if part.strip())
        if partial.strip():
            self._lines.append(partial)


@functools.cache
def _pdeathsig_prefix() -> tuple[str, ...]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    try:  # util-linux older than 2.33 has setpriv without --pdeathsig
        subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--")


@atexit.register
def _kill_engines_left_running() -> None:
    for engine in list(_running):
        engine.kill()
