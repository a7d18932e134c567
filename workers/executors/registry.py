"""What this host can do: the job types it can run, the control actions it answers, and the facts
about the host a runtime advertises when it registers and heartbeats.

An executor module exports `EXECUTORS` (job type -> executor) and, if it answers control
messages, `CONTROL_HANDLERS` (action -> handler). It imports what it needs at module level, so a
host that lacks a dependency (say `huggingface_hub`) simply does not advertise those types.
"""

import importlib
import importlib.util
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Awaitable, Callable

from app.contract.messages import ControlMessage, GpuInfo, JobType
from app.contract.policy import SANDBOX_DRIVER_LABEL, SANDBOX_NETWORK_LABEL
from app.contract.logs import log
from workers.executors.base import Executor
from workers.sandbox.isolation import isolation_driver
from workers.sandbox.network import network_driver

EXECUTOR_MODULES = ("workers.executors.model_inspect", "workers.executors.sandbox")

logger = logging.getLogger("berth.worker.registry")


def available() -> dict[str, Executor]:
    """Job type -> executor, for every executor whose module (and dependencies) import here."""
    executors: dict[str, Executor] = {}
    for module_name in EXECUTOR_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            log(logger, logging.WARNING, "executor not available on this host", module=module_name, reason=str(exc))
            continue
        executors.update({JobType(job_type).value: executor for job_type, executor in module.EXECUTORS.items()})
        _control_handlers.update(getattr(module, "CONTROL_HANDLERS", {}))
    return executors


# --- control actions ------------------------------------------------------------------------

# Answers a control message with a result dict, or raises ExecutorError with a reason to show.
# Filled by `available()` from the executor modules that load on this host.
ControlHandler = Callable[[ControlMessage], Awaitable[dict[str, Any]]]
_control_handlers: dict[str, ControlHandler] = {}


def control_handler(action: str) -> ControlHandler | None:
    return _control_handlers.get(action)


# --- host facts -----------------------------------------------------------------------------


def detect_runtimes() -> dict[str, bool]:
    return {
        "node": shutil.which("node") is not None,
        "python": shutil.which("python3") is not None or shutil.which("python") is not None,
        "ollama": shutil.which("ollama") is not None,
        "vllm": shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None,
        "sglang": importlib.util.find_spec("sglang") is not None,
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
