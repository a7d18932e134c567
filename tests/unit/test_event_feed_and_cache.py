"""The in-process pieces on the hot paths: the event feed that wakes streams, and the TTL cache."""

import asyncio
import gc
import threading
import time

from app.contract.messages import EventStatus
from app.domain.jobs import JobEvent
from app.services.event_feed import EventFeed
from app.store.cache import TtlCache


def _events(*seqs: int) -> list[JobEvent]:
    return [JobEvent(seq=seq, step="pull", status=EventStatus.running) for seq in seqs]


def test_a_subscription_gets_events_published_from_another_thread():
    event_feed = EventFeed()

    async def scenario():
        feed = event_feed.subscribe("ws_a", "job_1")
        try:
            other = threading.Thread(target=event_feed.publish, args=("ws_a", "job_1", _events(2, 3)))
            other.start()
            got = await feed.wait(timeout=5)
            other.join()
            assert [e.seq for e in got] == [2, 3]
            event_feed.publish("ws_a", "job_2", _events(9))  # another job's events are not ours
            event_feed.publish("ws_b", "job_1", _events(9))  # nor another workspace's
            assert await feed.wait(timeout=0.05) == []
        finally:
            feed.close()
        assert ("ws_a", "job_1") not in event_feed._subscriptions

    asyncio.run(scenario())


def test_events_published_before_the_wait_are_kept():
    event_feed = EventFeed()

    async def scenario():
        feed = event_feed.subscribe("ws_a", "job_3")
        event_feed.publish("ws_a", "job_3", _events(4))
        await asyncio.sleep(0)  # let the loop deliver
        event_feed.publish("ws_a", "job_3", _events(5))
        await asyncio.sleep(0)
        assert [e.seq for e in await feed.wait(timeout=0)] == [4, 5]
        feed.close()

    asyncio.run(scenario())


def test_a_stream_dropped_before_it_started_leaves_no_subscriber():
    event_feed = EventFeed()

    async def scenario():
        event_feed.subscribe("ws_a", "job_4")  # never waited on, never closed (the client went away)
        gc.collect()
        assert not list(event_feed._subscriptions.get(("ws_a", "job_4"), ()))
        event_feed.publish("ws_a", "job_4", _events(1))  # nothing to deliver to, and no error

    asyncio.run(scenario())


def test_the_cache_forgets_after_its_time_and_on_request():
    cache: TtlCache[str] = TtlCache(ttl_seconds=0.05)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"
    cache.forget("a")
    assert cache.get("a") is None
    time.sleep(0.06)
    assert cache.get("b") is None


def test_a_zero_ttl_cache_stores_nothing_and_a_full_one_starts_over():
    assert TtlCache(ttl_seconds=0).get("a") is None
    off: TtlCache[int] = TtlCache(ttl_seconds=0)
    off.put("a", 1)
    assert off.get("a") is None
    small: TtlCache[int] = TtlCache(ttl_seconds=60, max_entries=2)
    small.put("a", 1)
    small.put("b", 2)
    small.put("c", 3)
    assert small.get("c") == 3 and small.get("a") is None
