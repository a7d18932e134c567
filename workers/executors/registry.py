"""What this host can do: the job types it can run, the control actions it answers, and the facts
about the host a runtime advertises when it registers and heartbeats.

An executor module exports `EXECUTORS` (job type -> executor) and, if it answers control
messages, `CONTROL_HANDLERS` (action -> handler of a message for one of its running jobs),
`HOST_CONTROL_HANDLERS` (action -> handler of a message about what the worker's `WorkerHost`
holds rather than one job, such as evicting a cached model; given the host too) and
`STREAM_HANDLERS` (action -> handler that answers through an ASGI `send` as the answer arrives;
only the direct control endpoint streams). It imports what it needs at module level, so a host
that lacks a dependency (say `huggingface_hub`) simply does not advertise those types. A module
whose jobs run until they are stopped (a sandbox, a serving engine) names those types in
`LONG_LIVED`: a stopping worker releases them at once instead of waiting for them to finish.
"""

import functools
import importlib
import logging
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.contract.logs import log
from app.contract.messages import ControlMessage, GpuInfo, JobType, RuntimeKind, RuntimeOffers
from app.contract.policy import SANDBOX_DRIVER_LABEL, SANDBOX_NETWORK_LABEL
from workers.executors.base import Executor, WorkerHost
from workers.models import engines
from workers.models.host import ModelHost
from workers.sandbox.isolation import isolation_driver
from workers.sandbox.network import network_driver

EXECUTOR_MODULES = ("workers.executors.model_inspect", "workers.executors.models", "workers.executors.sandbox",
                    "workers.executors.ssh")
SANDBOX_JOB_TYPES = (JobType.mcp_test.value, JobType.mcp_run.value)

logger = logging.getLogger("berth.worker.registry")


# Answers a control message with a result dict, or raises ExecutorError with a reason to show.
ControlHandler = Callable[[ControlMessage], Awaitable[dict[str, Any]]]
# ASGI's `send`: what a streamed answer is written to.
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Answers a control message through `send`: the response's start, then its body as it arrives.
# It never raises for a reason to show: it answers with that reason (see workers.models.proxy).
StreamHandler = Callable[[ControlMessage, Send], Awaitable[None]]


class ExecutorRegistry:
    """The job types this host can run and the control actions it answers, loaded once from the
    executor modules whose dependencies import here, and the host they share; the worker owns it."""

    def __init__(self, executors: dict[str, Executor], control_handlers: dict[str, ControlHandler],
                 long_lived: frozenset[str] = frozenset(), stream_handlers: dict[str, StreamHandler] | None = None,
                 host: WorkerHost | None = None):
        self.executors = executors
        self.control_handlers = control_handlers
        self.long_lived = long_lived
        self.stream_handlers = stream_handlers or {}
        self.host = host or WorkerHost()

    @classmethod
    def load(cls, module_names: tuple[str, ...] = EXECUTOR_MODULES, host: WorkerHost | None = None
             ) -> "ExecutorRegistry":
        host = host or WorkerHost()
        executors: dict[str, Executor] = {}
        control_handlers: dict[str, ControlHandler] = {}
        stream_handlers: dict[str, StreamHandler] = {}
        long_lived: set[str] = set()
        for module_name in module_names:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                log(logger, logging.WARNING, "executor not available on this host", module=module_name,
                    reason=str(exc))
                continue
            executors.update({JobType(job_type).value: executor for job_type, executor in module.EXECUTORS.items()})
            control_handlers.update(getattr(module, "CONTROL_HANDLERS", {}))
            control_handlers.update({action: functools.partial(handler, host=host)
                                     for action, handler in getattr(module, "HOST_CONTROL_HANDLERS", {}).items()})
            stream_handlers.update(getattr(module, "STREAM_HANDLERS", {}))
            long_lived.update(JobType(job_type).value for job_type in getattr(module, "LONG_LIVED", ()))
        return cls(executors, control_handlers, frozenset(long_lived), stream_handlers, host)

    @property
    def job_types(self) -> list[JobType]:
        return sorted(JobType(job_type) for job_type in self.executors)

    def executor(self, job_type: str) -> Executor | None:
        return self.executors.get(job_type)

    def control_handler(self, action: str) -> ControlHandler | None:
        return self.control_handlers.get(action)

    def stream_handler(self, action: str) -> StreamHandler | None:
        return self.stream_handlers.get(action)

    def offers(self, tool_dirs: list[Path], allow_unisolated: bool) -> RuntimeOffers:
        """What this host offers sandboxes, for registration and heartbeats."""
        runs_sandboxes = any(job_type in self.executors for job_type in SANDBOX_JOB_TYPES)
        return RuntimeOffers(tool_dirs=[os.path.abspath(directory) for directory in tool_dirs],
                             isolation=isolation_driver(allow_unisolated) if runs_sandboxes else "none")


# --- host facts -----------------------------------------------------------------------------


def detect_runtimes(models: ModelHost | None) -> dict[RuntimeKind, bool]:
    """The runtimes this host has; serving engines only where `models` (the worker's model host)
    can start them, with the commands it was configured with."""
    return {
        "node": shutil.which("node") is not None,
        "python": shutil.which("python3") is not None or shutil.which("python") is not None,
        "ollama": shutil.which("ollama") is not None,
        **engines.available(models.engine_commands if models is not None else {}),
    }


def detect_gpus() -> list[GpuInfo]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log(logger, logging.WARNING, "nvidia-smi failed; advertising no GPUs", reason=str(exc))
        return []
    gpus = []
    for line in output.splitlines():
        name, _, memory = line.rpartition(",")
        try:
            gpus.append(GpuInfo(name=name.strip()[:200], memory_mb=int(float(memory))))
        except ValueError:
            log(logger, logging.WARNING, "unreadable nvidia-smi line", line=line)
    return gpus


def sandbox_labels(allow_unisolated: bool) -> dict[str, str]:
    """How this host confines sandboxes, as the labels the API's dispatch reads
    (`app.contract.policy.placement_refusal`)."""
    return {SANDBOX_DRIVER_LABEL: isolation_driver(allow_unisolated), SANDBOX_NETWORK_LABEL: network_driver() or "none"}


def free_disk_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None
