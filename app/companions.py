"""What runs beside the API in its own process and answers for itself in `/status`.

The local stack runs the API in its process and supervises a worker beside it; when that worker
dies and cannot be brought back, jobs wait for ever, and `/status` must say so. The stack (in
app.local, which nothing in app imports) registers a reporter here; the status service reads
`reports()`. A deployed API registers none, and has nothing to add.
"""

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

CompanionState = Literal["starting", "running", "restarting", "failed", "stopped"]


@dataclass(frozen=True)
class CompanionReport:
    name: str  # e.g. "local_worker"
    state: CompanionState
    healthy: bool  # False: a person should act (the detail says how)
    detail: str  # one sentence for people
    pid: int | None = None
    restarts: int = 0  # since the stack started

    def view(self) -> dict[str, Any]:
        return asdict(self)


_reporters: dict[str, Callable[[], CompanionReport]] = {}
_lock = threading.Lock()


def register(name: str, reporter: Callable[[], CompanionReport]) -> None:
    """`reporter` answers for `name` from now on (replacing any earlier one)."""
    with _lock:
        _reporters[name] = reporter


def unregister(name: str) -> None:
    with _lock:
        _reporters.pop(name, None)


def reports() -> list[CompanionReport]:
    with _lock:
        reporters = list(_reporters.values())
    return [reporter() for reporter in reporters]
