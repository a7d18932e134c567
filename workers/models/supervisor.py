"""Serving a snapshot with an engine for as long as its job runs.

Start the engine on a free loopback port with its GPUs, wait (bounded by the spec's
`startup_timeout_seconds`) for its health endpoint, report the installation `ready`, and watch it.
An engine that exits or never becomes healthy while starting fails the job at once, with the end
of its output (a model that did not load will not load on a second try). One that crashes after it
was ready is restarted after a short backoff, up to `max_restarts` times; a crash count is
forgiven once an engine has stayed up for `STABLE_SECONDS`. The engine is stopped, with its whole
process group, when the job is cancelled, expires or its worker stops.
"""

import asyncio
import contextlib
import socket
import time

import httpx

from app.contract.models import EngineSpec, FailureCode, InstallationStatus
from workers.models.engines import LOOPBACK, Engine, Launch, environment
from workers.models.host import GpuPool, NotEnoughGpus
from workers.models.installation import Installation
from workers.models.process import EngineProcess

HEALTH_POLL_SECONDS = 0.5
HEALTH_REQUEST_SECONDS = 2.0
RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 600.0
MESSAGE_TAIL_LINES = 5


class EngineFailed(Exception):
    def __init__(self, code: FailureCode, message: str, log_tail: str | None = None):
        super().__init__(message)
        self.code = code
        self.log_tail = log_tail


class Supervisor:
    def __init__(self, installation: Installation, engine: Engine, command: list[str], snapshot: str,
                 spec: EngineSpec, gpus: GpuPool, cancelled: asyncio.Event):
        self.installation = installation
        self.engine = engine
        self.command = command
        self.snapshot = snapshot
        self.spec = spec
        self.gpus = gpus
        self.cancelled = cancelled
        self.name = engine.name.value

    async def serve(self, *, keep_serving: bool) -> dict:
        """Serve until cancelled (`keep_serving`), or only until the engine is first healthy.
        Raises EngineFailed when it cannot serve."""
        host_gpus = await asyncio.to_thread(lambda: self.gpus.ids)  # detected once, by nvidia-smi
        try:
            gpu_ids = self.gpus.take(self.spec.tensor_parallel_size or 1) if host_gpus else []
        except NotEnoughGpus as error:
            raise EngineFailed(FailureCode.no_gpu, str(error)) from error
        try:
            return await self._serve(gpu_ids, keep_serving)
        finally:
            await self._stop_engine()
            self.gpus.give_back(gpu_ids)

    async def _serve(self, gpu_ids: list[str], keep_serving: bool) -> dict:
        restarts = 0
        while True:
            process, port, started = await self._start(gpu_ids, restarts)
            outcome = await self._until_healthy(process, port, time.monotonic() + self.spec.startup_timeout_seconds)
            if outcome == "cancelled":
                return {"state": "stopped"}
            if outcome == "exited":
                raise self._failure(process, f"{self.name} exited with code {process.returncode} before it"
                                             " became healthy")
            if outcome == "timeout":
                await process.stop()
                raise self._failure(process, f"{self.name} did not become healthy within"
                                             f" {self.spec.startup_timeout_seconds:g} s")
            healthy_after = round(time.monotonic() - started, 3)
            await self._ready(port, restarts, healthy_after)
            if not keep_serving:
                return {"state": "healthy", "healthy_after_seconds": healthy_after}
            ready_at = time.monotonic()
            if not await self._until_exit(process):
                return {"state": "stopped"}
            up_for = time.monotonic() - ready_at
            restarts = 1 if up_for >= STABLE_SECONDS else restarts + 1
            self.installation.port = None
            if restarts > self.spec.max_restarts:
                raise self._failure(process, f"{self.name} exited with code {process.returncode} after {up_for:.0f} s"
                                             f" of serving; gave up after {self.spec.max_restarts} restart(s)")
            delay = RESTART_BACKOFF_SECONDS[min(restarts - 1, len(RESTART_BACKOFF_SECONDS) - 1)]
            await self.installation.report(
                "engine", "error", f"{self.name} exited with code {process.returncode} after {up_for:.0f} s of"
                f" serving; restarting in {delay:g} s ({restarts} of {self.spec.max_restarts})",
                status=InstallationStatus.attached, endpoint=None, restarts=restarts, log_tail=process.tail())
            await process.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.cancelled.wait(), delay)
            if self.cancelled.is_set():
                return {"state": "stopped"}

    async def _start(self, gpu_ids: list[str], restarts: int) -> tuple[EngineProcess, int, float]:
        port = _free_port()
        launch = Launch(self.snapshot, port, self.spec, gpu_ids)
        process = EngineProcess(self.engine.argv(self.command, launch), environment(launch))
        self.installation.engine = process
        try:
            await process.start()
        except OSError as error:
            raise EngineFailed(FailureCode.engine_unavailable,
                               f"{self.name} could not be started ({' '.join(self.command)}): {error}") from error
        gpus = f" on GPU {','.join(gpu_ids)}" if gpu_ids else ""
        await self.installation.report(
            "engine", "running", f"starting {self.name} (pid {process.pid}) on port {port}{gpus}",
            status=InstallationStatus.attached, served_model_name=self.spec.served_model_name, restarts=restarts)
        return process, port, time.monotonic()

    async def _until_healthy(self, process: EngineProcess, port: int, deadline: float) -> str:
        url = f"http://{LOOPBACK}:{port}{self.engine.health_path}"
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self.cancelled.wait())
        try:
            async with httpx.AsyncClient(timeout=HEALTH_REQUEST_SECONDS) as client:
                while True:
                    if self.cancelled.is_set():
                        return "cancelled"
                    if exited.done():
                        return "exited"
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url)).status_code == 200:
                            return "healthy"
                    if time.monotonic() >= deadline:
                        return "timeout"
                    await asyncio.wait({exited, stop}, timeout=HEALTH_POLL_SECONDS,
                                       return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            stop.cancel()

    async def _until_exit(self, process: EngineProcess) -> bool:
        """True when the engine exited, False when the job was cancelled first."""
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self.cancelled.wait())
        await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        stop.cancel()
        return not self.cancelled.is_set()

    async def _ready(self, port: int, restarts: int, healthy_after: float) -> None:
        self.installation.port = port
        self.installation.mark_ready()
        endpoint = f"http://{LOOPBACK}:{port}{self.engine.api_prefix}"
        await self.installation.report(
            "ready", "ok", f"serving {self.spec.served_model_name} with {self.name} at {endpoint}"
            f" (healthy after {healthy_after:g} s)", status=InstallationStatus.ready, endpoint=endpoint,
            restarts=restarts, log_tail=None)

    async def _stop_engine(self) -> None:
        process, self.installation.engine, self.installation.port = self.installation.engine, None, None
        if process is None:
            return
        try:
            await process.stop()
        except asyncio.CancelledError:
            process.kill()
            raise

    def _failure(self, process: EngineProcess, message: str) -> EngineFailed:
        tail = process.tail()
        last_lines = "\n".join(tail.splitlines()[-MESSAGE_TAIL_LINES:])
        return EngineFailed(FailureCode.engine_failed, f"{message}; its last output:\n{last_lines}"[:3000]
                            if last_lines else message, tail or None)


def _free_port() -> int:
    """A port free on loopback now. Another process may take it before the engine binds it; the
    engine then exits while starting and the job says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]
