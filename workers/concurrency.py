"""Small asyncio pieces the worker is built from: racing awaitables, a set of tasks it owns, and
the slots that bound how many jobs run at once."""

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any


async def wait_first(*awaitables: Awaitable[Any], timeout: float | None = None) -> None:
    """Return when the first awaitable completes (or at `timeout`). Coroutines given here are
    cancelled afterwards; tasks and futures given here are left running."""
    owned = [asyncio.ensure_future(a) for a in awaitables if not asyncio.isfuture(a)]
    shared = [a for a in awaitables if asyncio.isfuture(a)]
    try:
        await asyncio.wait([*owned, *shared], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()


class TaskSet:
    """Tasks started on the worker's behalf, each forgotten when it ends; cancelled together."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float) -> None:
        """Until every task ended or `timeout` passed."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def cancel(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Slot:
    """One of the worker's `max_concurrent_jobs`, given back exactly once."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self._semaphore = semaphore
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._semaphore.release()


class Slots:
    def __init__(self, count: int):
        self._semaphore = asyncio.Semaphore(count)

    async def acquire(self, unless: asyncio.Event) -> Slot | None:
        """A free slot, once there is one; None once `unless` is set."""
        acquire = asyncio.ensure_future(self._semaphore.acquire())
        await wait_first(acquire, unless.wait())
        if not acquire.done():
            acquire.cancel()
            return None
        if unless.is_set():
            self._semaphore.release()
            return None
        return Slot(self._semaphore)
