"""Running the model executors in-process, as the worker runs them, for worker-level tests and
benchmarks: a real JobContext whose events are collected, a model host in a temporary directory,
and the fake engine as its vLLM command."""

import asyncio
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.contract.messages import ControlMessage
from workers.executors import models as model_executors
from workers.executors.base import JobContext, WorkerHost
from workers.models.host import GpuPool, ModelHost

FAKE_ENGINE = Path(__file__).resolve().parent / "fake_engine.py"


def fake_engine_command(*flags: str) -> list[str]:
    """What BERTH_WORKER_VLLM_COMMAND holds in tests: the fake engine, with its fault flags."""
    return [sys.executable, str(FAKE_ENGINE), *flags]


def fake_vllm_environment(*flags: str) -> dict[str, str]:
    """For a worker process (`python -m workers`): its vLLM command is the fake engine."""
    return {"BERTH_WORKER_VLLM_COMMAND": shlex.join(fake_engine_command(*flags))}


def model_host(directory: Path, *engine_flags: str, gpus: list[str] | None = None,
               volume_roots: tuple[Path, ...] = ()) -> ModelHost:
    return ModelHost(directory / "models", {"vllm": fake_engine_command(*engine_flags)}, volume_roots,
                     GpuPool(gpus or []))


@dataclass(frozen=True)
class Event:
    step: str
    status: str
    message: str
    data: dict
    at: float  # monotonic seconds

    @property
    def installation_status(self) -> str | None:
        return self.data.get("installation_status")


@dataclass
class ModelJob:
    """One model job run by its executor; `events` fills as it reports."""

    job_type: str
    payload: dict[str, Any]
    work_dir: Path
    job_id: str = "job-1"
    workspace_id: str = "ws-1"
    host: ModelHost | None = None  # the worker's model host; None: a worker without one
    events: list[Event] = field(default_factory=list)
    task: asyncio.Task | None = None
    ctx: JobContext = field(init=False)

    def __post_init__(self) -> None:
        async def emit(step: str, status: str, message: str = "", data: dict | None = None) -> None:
            self.events.append(Event(step, status, message, data or {}, time.monotonic()))

        self.ctx = JobContext(job_id=self.job_id, workspace_id=self.workspace_id, job_type=self.job_type,
                              payload=self.payload, expires_at=time.time() + 3600, emit=emit,
                              work_dir=str(self.work_dir), host=WorkerHost(models=self.host))

    def start(self) -> "ModelJob":
        self.task = asyncio.ensure_future(model_executors.EXECUTORS[self.job_type](self.ctx))
        return self

    async def result(self, timeout: float = 60) -> dict:
        assert self.task is not None
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def until(self, predicate: Callable[[Event], bool], timeout: float = 30) -> Event:
        """The first event matching `predicate`, waiting for it (or for the job to end without one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((event for event in self.events if predicate(event)), None)
            if found is not None:
                return found
            if self.task is not None and self.task.done():
                self.task.result()  # its exception, if it failed
                raise AssertionError(f"the job ended without such an event: {self.summary()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no such event within {timeout} s: {self.summary()}")
            await asyncio.sleep(0.02)

    async def until_status(self, status: str, timeout: float = 30) -> Event:
        return await self.until(lambda event: event.installation_status == status, timeout)

    async def cancel(self, timeout: float = 15) -> dict:
        self.ctx.cancelled.set()
        return await self.result(timeout)

    def statuses(self) -> list[str]:
        """The installation statuses reported, each once, in order."""
        seen: list[str] = []
        for event in self.events:
            if event.installation_status and (not seen or seen[-1] != event.installation_status):
                seen.append(event.installation_status)
        return seen

    def summary(self) -> str:
        return "; ".join(f"{e.step}/{e.status}: {e.message[:120]}" for e in self.events[-8:])

    def control(self, action: str, arguments: dict | None = None, workspace_id: str | None = None) -> ControlMessage:
        return ControlMessage.model_validate({
            "request_id": f"req-{time.monotonic_ns()}", "workspace_id": workspace_id or self.workspace_id,
            "job_id": self.job_id, "action": action, "arguments": arguments or {}, "deadline": time.time() + 30})


def engine_pids(marker: Path) -> list[int]:
    """Live processes whose command line mentions `marker` (each test's own directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(marker) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State"))
                if "zombie" not in state:
                    pids.append(int(entry.name))
        except (OSError, StopIteration):
            continue
    return pids
