"""Hands a job's newly stored events to the event streams waiting on it in this process.

An SSE stream otherwise learns of new events only by polling the table. When the write and the
stream share a process (the local stack's API serves many requests at once), the writer passes
the stored events straight to the waiting streams; across processes (Lambda instances) the
stream's poll still finds them. Writers publish only after the events are stored, so a stream
never shows an event that is not in the table. One feed per process: the composition root's.
"""

import asyncio
import threading
import weakref

from app.domain.jobs import JobEvent


class Subscription:
    """Collects the events published for one job from the moment it is opened."""

    def __init__(self, feed: "EventFeed", key: tuple[str, str]):
        self.key = key
        self._feed = feed
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._events: list[JobEvent] = []

    def _deliver(self, events: list[JobEvent]) -> None:
        self._events.extend(events)
        self._wake.set()

    def close(self) -> None:
        self._feed._close(self)

    async def wait(self, timeout: float) -> list[JobEvent]:
        """The events published since the last call, waiting up to `timeout` for the first."""
        if not self._events:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        self._wake.clear()
        events, self._events = self._events, []
        return events


class EventFeed:
    def __init__(self) -> None:
        # Weakly held: a stream dropped before it starts (the client went away) leaves nothing.
        self._subscriptions: dict[tuple[str, str], weakref.WeakSet[Subscription]] = {}
        self._lock = threading.Lock()

    def publish(self, workspace_id: str, job_id: str, events: list[JobEvent]) -> None:
        """Stored events of one job (from any thread)."""
        if not events:
            return
        with self._lock:
            subscriptions = list(self._subscriptions.get((workspace_id, job_id), ()))
        for subscription in subscriptions:
            subscription._loop.call_soon_threadsafe(subscription._deliver, events)

    def subscribe(self, workspace_id: str, job_id: str) -> Subscription:
        """Start collecting; call from the event loop that will `wait`, and `close` when done."""
        subscription = Subscription(self, (workspace_id, job_id))
        with self._lock:
            self._subscriptions.setdefault(subscription.key, weakref.WeakSet()).add(subscription)
        return subscription

    def _close(self, subscription: Subscription) -> None:
        with self._lock:
            registered = self._subscriptions.get(subscription.key)
            if registered is not None:
                registered.discard(subscription)
                if not registered:
                    del self._subscriptions[subscription.key]
