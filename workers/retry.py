"""The worker's one way to try again: exponential backoff with jitter while something it depends on
(the API, a queue) is unreachable.

`Retry.until_done` calls an operation until it returns. Only the failures named in `retry_on` are
retried, those a later attempt can fix; anything else propagates at once, so a refused request is
never retried as if the API were down. Each call starts from the shortest delay again, so a
success resets the backoff. `stop` ends the waiting early (the worker is stopping). The sleep and
the jitter are injectable, so tests do not wait.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from workers.concurrency import wait_first

_Result = TypeVar("_Result")
Failures = type[Exception] | tuple[type[Exception], ...]


class RetryStopped(Exception):
    """`stop` was set before the operation succeeded; the last failure, if any, is the cause."""


def _jitter() -> float:
    # Between half and all of the delay, so a fleet that lost the API does not retry in step.
    return random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Retry:
    max_seconds: float  # the longest wait between two attempts
    first_seconds: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = _jitter

    def delays(self) -> Iterator[float]:
        """The waits after the first, second, ... failure: doubling up to `max_seconds`, jittered."""
        delay = min(self.first_seconds, self.max_seconds)
        while True:
            yield delay * self.jitter()
            delay = min(delay * 2, self.max_seconds)

    async def until_done(
        self,
        operation: Callable[[], Awaitable[_Result]],
        *,
        retry_on: Failures,
        on_failure: Callable[[Exception, float], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> _Result:
        """`operation()`'s result, calling it again after each `retry_on` failure (`on_failure`
        hears of each, with the delay before the next attempt). RetryStopped once `stop` is set:
        no attempt starts after that, and a wait in progress ends."""
        delays = self.delays()
        while True:
            if stop is not None and stop.is_set():
                raise RetryStopped()
            try:
                return await operation()
            except retry_on as failure:
                delay = next(delays)
                if on_failure is not None:
                    on_failure(failure, delay)
                if stop is None:
                    await self.sleep(delay)
                else:
                    await wait_first(self.sleep(delay), stop.wait())
                    if stop.is_set():
                        raise RetryStopped() from failure
