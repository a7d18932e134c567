"""What an executor is: an async function from a JobContext to a result dict.

An executor reports progress with `ctx.emit(step, status, message, data)`; the worker adds the
per-job sequence number, batches, spools and delivers. It returns the job's result (stored on
the job) or raises `ExecutorError` with a message a user can act on. It must return promptly
once `ctx.cancelled` is set. What outlives any one job (the package cache, the model cache and
GPUs) is the worker's `WorkerHost`, lent to every job as `ctx.host`.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.contract.messages import ControlErrorCode
from app.contract.policy import SandboxPolicy
from workers.config import WorkerConfig
from workers.models.host import ModelHost
from workers.packages import PackageCache


class ExecutorError(Exception):
    """A job (or control action) failed for a reason worth showing to the user.

    `code` tells the API how to answer a control action that failed (see ControlReply.code).
    """

    def __init__(self, message: str, code: ControlErrorCode = "failed"):
        super().__init__(message)
        self.code = code


class Emit(Protocol):
    def __call__(self, step: str, status: str, message: str = "", data: dict | None = None) -> Awaitable[None]: ...


@dataclass(frozen=True)
class WorkerHost:
    """What one worker process keeps for all its jobs, built once from its settings: the package
    cache sandboxes install into and the model host (model cache, engines, GPUs). None: this
    worker offers no such thing (a test's context, say)."""

    packages: PackageCache | None = None
    models: ModelHost | None = None

    @classmethod
    def from_config(cls, config: WorkerConfig) -> "WorkerHost":
        return cls(
            packages=PackageCache(config.package_cache_root, config.package_cache_max_bytes,
                                  {registry: url for registry, url in config.package_registries.items()}),
            models=ModelHost.from_config(config),
        )


@dataclass
class JobContext:
    job_id: str
    workspace_id: str
    job_type: str
    payload: dict[str, Any]
    expires_at: float
    emit: Emit
    work_dir: str
    policy: SandboxPolicy | None = None  # for sandbox jobs: the limits and command lists to enforce
    proxy_key: str = ""  # verifies proxy tokens the API signed for this runtime (its signing key)
    # The job's secrets, opened from the sealed JobMessage.secrets (replaced when a control message
    # brings new ones): a JSON object whose keys each job type defines, e.g. {"env": {...}} for a
    # sandbox. Never log or emit them.
    secrets: dict[str, Any] = field(default_factory=dict)
    sandbox_tool_dirs: tuple[str, ...] = ()  # host directories sandboxes see read-only
    allow_unisolated_sandboxes: bool = False  # the owner accepts sandboxes without bubblewrap
    host: WorkerHost = field(default_factory=WorkerHost)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    deadline_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def extend(self, expires_at: float) -> None:
        """Move the job's deadline (a sandbox's TTL changed); the worker re-arms its timer."""
        self.expires_at = expires_at
        self.deadline_changed.set()


Executor = Callable[[JobContext], Awaitable[dict[str, Any]]]
