"""Serving engines a runtime can start, as a registry: how to launch each on a snapshot, where it
answers, and whether this host can start it at all (what a runtime advertises in `runtimes`).

vLLM is the first; SGLang joins by adding an `Engine` here (its `python -m sglang.launch_server
--model-path ... --host ... --port ... --served-model-name ... --tp ...` and `/health`).
"""

import os
import shutil
from dataclasses import dataclass
from typing import Protocol

from app.contract.messages import RuntimeKind
from app.contract.models import EngineSpec, ServingEngine

DEFAULT_VLLM_COMMAND = "vllm serve"
LOOPBACK = "127.0.0.1"
# Never handed to an engine: the worker's own settings and tokens, cloud credentials, hub tokens.
_PRIVATE_ENVIRONMENT_PREFIXES = ("BERTH_", "AWS_")
_PRIVATE_ENVIRONMENT = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"})


@dataclass(frozen=True)
class Launch:
    snapshot: str
    port: int
    spec: EngineSpec
    gpu_ids: list[str]  # what CUDA_VISIBLE_DEVICES lists; empty on a host without GPUs


class Engine(Protocol):
    name: ServingEngine
    health_path: str  # answers 200 once the model is loaded
    api_prefix: str  # where its OpenAI-compatible API begins

    def argv(self, command: list[str], launch: Launch) -> list[str]: ...


class Vllm:
    name = ServingEngine.vllm
    health_path = "/health"
    api_prefix = "/v1"

    def argv(self, command: list[str], launch: Launch) -> list[str]:
        spec = launch.spec
        arguments = [*command, launch.snapshot, "--host", LOOPBACK, "--port", str(launch.port),
                     "--served-model-name", spec.served_model_name,
                     "--tensor-parallel-size", str(spec.tensor_parallel_size or 1)]
        if spec.max_model_len is not None:
            arguments += ["--max-model-len", str(spec.max_model_len)]
        if spec.gpu_memory_utilization is not None:
            arguments += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
        if spec.dtype is not None:
            arguments += ["--dtype", spec.dtype]
        return arguments


ENGINES: dict[ServingEngine, Engine] = {ServingEngine.vllm: Vllm()}


def environment(launch: Launch, base: dict[str, str] | None = None) -> dict[str, str]:
    """The engine's environment: the worker's, less its secrets, with the engine's GPUs, offline
    (the snapshot is complete; the engine needs no hub and gets no token) and without telemetry."""
    inherited = os.environ if base is None else base
    env = {name: value for name, value in inherited.items()
           if not name.startswith(_PRIVATE_ENVIRONMENT_PREFIXES) and name not in _PRIVATE_ENVIRONMENT}
    if launch.gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(launch.gpu_ids)
    env.update(HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    return env


def command_available(command: list[str]) -> bool:
    """Whether the command's executable exists here (a path, or a name on PATH)."""
    if not command:
        return False
    executable = command[0]
    if "/" in executable:
        return os.path.isfile(executable) and os.access(executable, os.X_OK)
    return shutil.which(executable) is not None


# The engines a runtime reports on (app.contract.messages.RUNTIME_KINDS); those not in ENGINES yet
# are reported as not startable.
REPORTED_ENGINES: tuple[RuntimeKind, ...] = ("vllm", "sglang")


def available(commands: dict[str, list[str]]) -> dict[RuntimeKind, bool]:
    """Engine name -> whether this runtime can start it (an engine without a command cannot)."""
    startable = {engine.value for engine in ENGINES}
    return {name: name in startable and name in commands and command_available(commands[name])
            for name in REPORTED_ENGINES}
