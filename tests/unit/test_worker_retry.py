"""The worker's one retry helper: what it retries, how long it waits, and how it stops. The sleep
is injected, so no test waits."""

import asyncio

import pytest

from workers.api_client import ApiUnavailable, RequestRejected
from workers.retry import Retry, RetryStopped


class Clock:
    """An injected sleep: records each wait and lets the event loop run, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def failing(times: int, error: Exception, result: str = "done"):
    calls = []

    async def operation() -> str:
        calls.append(len(calls))
        if len(calls) <= times:
            raise error
        return result

    return operation, calls


def test_an_unreachable_api_is_tried_again_with_doubling_waits_up_to_the_cap():
    clock = Clock()
    retry = Retry(max_seconds=3.0, first_seconds=0.5, sleep=clock.sleep, jitter=lambda: 1.0)
    operation, calls = failing(5, ApiUnavailable(503, "down"))
    heard = []

    result = asyncio.run(retry.until_done(operation, retry_on=ApiUnavailable,
                                          on_failure=lambda error, delay: heard.append((error.status, delay))))

    assert result == "done" and len(calls) == 6
    assert clock.waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert heard == [(503, wait) for wait in clock.waits]


def test_waits_are_jittered_so_a_fleet_does_not_retry_in_step():
    waits = Retry(max_seconds=30.0).delays()
    first = [next(waits) for _ in range(4)]
    assert all(0.5 * base <= wait <= base for wait, base in zip(first, [0.5, 1.0, 2.0, 4.0], strict=True))
    assert len({round(next(Retry(max_seconds=30.0).delays()), 9) for _ in range(20)}) > 1


def test_each_call_starts_from_the_shortest_wait_again():
    clock = Clock()
    retry = Retry(max_seconds=30.0, sleep=clock.sleep, jitter=lambda: 1.0)

    async def twice() -> None:
        for _ in range(2):
            operation, _ = failing(2, ApiUnavailable(0, "unreachable"))
            await retry.until_done(operation, retry_on=ApiUnavailable)

    asyncio.run(twice())
    assert clock.waits == [0.5, 1.0, 0.5, 1.0]


def test_a_refused_request_is_never_retried_as_if_the_api_were_down():
    clock = Clock()
    operation, calls = failing(1, RequestRejected(400, "bad batch"))
    with pytest.raises(RequestRejected):
        asyncio.run(Retry(max_seconds=1.0, sleep=clock.sleep).until_done(operation, retry_on=ApiUnavailable))
    assert len(calls) == 1 and clock.waits == []


def test_stopping_ends_the_wait_at_once_and_starts_no_further_attempt():
    async def scenario() -> tuple[list[int], BaseException | None]:
        stop = asyncio.Event()
        never_ending_sleep = asyncio.Event().wait  # only `stop` can end the wait
        retry = Retry(max_seconds=60.0, sleep=lambda seconds: never_ending_sleep())
        operation, calls = failing(100, ApiUnavailable(0, "unreachable"))
        attempt = asyncio.create_task(retry.until_done(operation, retry_on=ApiUnavailable, stop=stop))
        while not calls:
            await asyncio.sleep(0)
        stop.set()
        with pytest.raises(RetryStopped) as stopped:
            await asyncio.wait_for(attempt, timeout=5)
        return calls, stopped.value.__cause__

    calls, cause = asyncio.run(scenario())
    assert len(calls) == 1
    assert isinstance(cause, ApiUnavailable)


def test_nothing_is_attempted_once_stop_is_set():
    stop = asyncio.Event()
    stop.set()
    operation, calls = failing(0, ApiUnavailable(0, "unreachable"))
    with pytest.raises(RetryStopped):
        asyncio.run(Retry(max_seconds=1.0).until_done(operation, retry_on=ApiUnavailable, stop=stop))
    assert calls == []
