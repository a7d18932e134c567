"""One model job's installation as this worker runs it: its status and progress, reported as events
(`ModelProgress` in each event's data) and answered to `model.status`; and the live ones, by job."""

import time
from typing import Any

import httpx

from app.contract.messages import ControlMessage
from app.contract.models import (
    FailureCode,
    InstallationState,
    InstallationStatus,
    ModelProgress,
    ModelPullPayload,
    ModelServePayload,
    progress_for,
)
from workers.executors.base import ExecutorError, JobContext
from workers.models.process import EngineProcess


class Installation:
    def __init__(self, ctx: JobContext, payload: ModelPullPayload):
        self.ctx = ctx
        self.payload = payload
        self.serving = isinstance(payload, ModelServePayload)
        self.status = InstallationStatus.queued
        self.progress = 0
        # Sticky facts every event repeats (commit, sizes, path, endpoint, ...); None clears one.
        self.facts: dict[str, Any] = {}
        self.engine: EngineProcess | None = None
        self.port: int | None = None
        self.ready_since: float | None = None
        self._client: httpx.AsyncClient | None = None

    async def report(self, step: str, step_status: str, message: str, *,
                     status: InstallationStatus | None = None, fraction: float = 0.0, **facts: Any) -> None:
        """Emit one event; `status` (when given) moves the installation, `fraction` through it."""
        if status is InstallationStatus.failed:
            self.status = status  # the progress stays where it stopped
        elif status is not None:
            self.status = status
            self.progress = progress_for(status, fraction, serving=self.serving)
        self.facts.update(facts)
        await self.ctx.emit(step, step_status, message, self.progress_data())

    async def fail(self, code: FailureCode, message: str, **facts: Any) -> ExecutorError:
        """Report the failure and return the error the executor raises."""
        await self.report("failed", "error", message, status=InstallationStatus.failed, failure=code, **facts)
        return ExecutorError(message, code="bad_request" if code is FailureCode.invalid else "failed")

    def progress_data(self) -> dict[str, Any]:
        progress = ModelProgress(installation_status=self.status, progress=self.progress,
                                 installation_id=self.payload.installation_id, **self.facts)
        return progress.model_dump(mode="json", exclude_none=True)

    def state(self) -> InstallationState:
        engine = self.payload.engine.engine if isinstance(self.payload, ModelServePayload) else None
        pid = self.engine.pid if self.engine is not None and self.engine.alive else None
        return InstallationState(**self.progress_data(), job_id=self.ctx.job_id, engine=engine, engine_pid=pid,
                                 ready_since=self.ready_since)

    def http_client(self) -> httpx.AsyncClient:
        """Kept-alive connections to the engine, for proxied requests (timeouts are per request)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=256))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def mark_ready(self) -> None:
        self.ready_since = time.time()

    @property
    def ready(self) -> bool:
        return self.status is InstallationStatus.ready and self.port is not None


LIVE: dict[str, Installation] = {}  # job id -> the installation its job runs on this worker


def live(message: ControlMessage, *, ready: bool = False) -> Installation:
    installation = LIVE.get(message.job_id)
    if installation is None or installation.ctx.workspace_id != message.workspace_id:
        raise ExecutorError(f"model job {message.job_id} is not running on this runtime", code="not_running")
    if ready and not installation.ready:
        raise ExecutorError(f"model {message.job_id} is {installation.status.value}, not ready", code="not_running")
    return installation
