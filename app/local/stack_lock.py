"""One stack per data directory.

Two stacks on one directory would restore one snapshot into two tables and write both back over
each other, and run two workers on one registration. The stack holds an `flock` on
`<data_dir>/stack.lock` for its life, taken before it touches anything else; the file names the
holder (pid, API and AWS URLs) for the refusal. The lock belongs to the open file, so the AWS
stand-in and the worker, which inherit it, hold it until they exit too: after a SIGKILLed stack the
next one waits for them (the stand-in writing the last changes, the worker releasing its jobs)
instead of starting beside them. The kernel drops the lock however its holders end.
"""

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

LOCK_FILE = "stack.lock"


class StackRunning(Exception):
    """Another stack holds this data directory; the message names it."""


class StackLock:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self.descriptor: int | None = None  # held while not None

    def acquire(self, holder: dict[str, str | int], wait_seconds: float = 60.0,
                waiting: Callable[[str], None] | None = None) -> None:
        """Take the lock and write `holder` (with this pid) into the file. A live stack holding it:
        StackRunning at once. A stack that is gone but whose processes still hold it: wait for
        them up to `wait_seconds` (telling `waiting` once), then StackRunning."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_seconds
        told = False
        try:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                other = _holder(descriptor)
                if other is None or _alive(other.get("pid")) or time.monotonic() > deadline:
                    raise StackRunning(_refusal(self.data_dir, other, gone=other is not None and not _alive(
                        other.get("pid"))))
                if waiting is not None and not told:
                    waiting(f"waiting for the processes of the berth that stopped (pid {other.get('pid')}) to exit: "
                            "they are saving its state")
                    told = True
                time.sleep(0.1)
        except BaseException:
            os.close(descriptor)
            raise
        os.fchmod(descriptor, 0o600)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps({"pid": os.getpid(), **holder}).encode(), 0)
        self.descriptor = descriptor

    def release(self) -> None:
        """Close this process's hold (children that inherited it hold it until they exit)."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


def _holder(descriptor: int) -> dict | None:
    try:
        found = json.loads(os.pread(descriptor, 4096, 0) or b"null")
    except ValueError:  # being written right now
        return None
    return found if isinstance(found, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _refusal(data_dir: Path, holder: dict | None, gone: bool) -> str:
    if holder is None:
        return f"another berth is starting on {data_dir}; stop it first, or give this one another --data-dir"
    pid = holder.get("pid")
    if gone:
        return (f"processes of the berth that stopped (pid {pid}) still hold {data_dir / LOCK_FILE}; "
                f"find them with `fuser -v {data_dir / LOCK_FILE}` and stop them")
    return (f"berth is already running on {data_dir}: pid {pid}, API {holder.get('api_url')}. "
            f"Stop it first (Ctrl-C in its terminal, or kill {pid}), or give this one another --data-dir")
