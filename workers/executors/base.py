"""What an executor is: an async function from a JobContext to a result dict.

An executor reports progress with `ctx.emit(step, status, message, data)`; the worker adds the
per-job sequence number, batches, spools and delivers. It returns the job's result (stored on
the job) or raises `ExecutorError` with a message a user can act on. It must return promptly
once `ctx.cancelled` is set.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol


class ExecutorError(Exception):
    """A job failed for a reason worth showing to the user (bad model id, gated repo...)."""


class Emit(Protocol):
    def __call__(self, step: str, status: str, message: str = "", data: dict | None = None) -> Awaitable[None]: ...


@dataclass
class JobContext:
    job_id: str
    workspace_id: str
    job_type: str
    payload: dict[str, Any]
    expires_at: float
    emit: Emit
    work_dir: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


Executor = Callable[[JobContext], Awaitable[dict[str, Any]]]
