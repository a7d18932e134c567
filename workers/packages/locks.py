"""Advisory file locks (flock) shared by every process that uses one package cache.

flock locks belong to an open file description, so two opens in one process exclude each
other just as two processes do, and the kernel drops a lock when its holder dies: a lease
cannot outlive the worker that took it. Waiting is a poll with LOCK_NB and a short sleep, so
a waiting task can be cancelled like any other (a thread blocked in flock could not).
"""

import asyncio
import fcntl
import os
from pathlib import Path

POLL_SECONDS = 0.05


class FileLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, *, shared: bool) -> bool:
        """Take the lock if no conflicting holder has it; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self, *, shared: bool) -> None:
        while not self.try_acquire(shared=shared):
            await asyncio.sleep(POLL_SECONDS)

    def release(self) -> None:
        """Safe to call more than once."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor of the description drops the lock
