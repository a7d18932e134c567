"""Hands a job's newly stored events to the event streams waiting on it in this process.

An SSE stream otherwise learns of new events only by polling the table. When the write and the
stream share a process (the local stack's API serves many requests at once), the writer passes
the stored events straight to the waiting streams; across processes (Lambda instances) the
stream's poll still finds them. Writers call `publish` only after the events are stored, so a stream never shows an event
that is not in the table.
"""

import asyncio
import threading
import weakref


class Subscription:
    """Collects the events published for one job from the moment it is opened."""

    def __init__(self, key: tuple[str, str]):
        self.key = key
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._events: list[dict] = []

    def _deliver(self, events: list[dict]) -> None:
        self._events.extend(events)
        self._wake.set()

    def close(self) -> None:
        _close(self)

    async def wait(self, timeout: float) -> list[dict]:
        """The events published since the last call, waiting up to `timeout` for the first."""
        if not self._events:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        self._wake.clear()
        events, self._events = self._events, []
        return events


# Weakly held: a stream that is dropped before it starts (the client went away) leaves nothing.
_subscriptions: dict[tuple[str, str], weakref.WeakSet[Subscription]] = {}
_lock = threading.Lock()


def publish(workspace_id: str, job_id: str, events: list[dict]) -> None:
    """Stored events of one job (from any thread)."""
    with _lock:
        subscriptions = list(_subscriptions.get((workspace_id, job_id), ()))
    for subscription in subscriptions:
        subscription._loop.call_soon_threadsafe(subscription._deliver, events)


def subscribe(workspace_id: str, job_id: str) -> Subscription:
    """Start collecting; call from the event loop that will `wait`, and `close` when done."""
    subscription = Subscription((workspace_id, job_id))
    with _lock:
        _subscriptions.setdefault(subscription.key, weakref.WeakSet()).add(subscription)
    return subscription


def _close(subscription: Subscription) -> None:
    with _lock:
        registered = _subscriptions.get(subscription.key)
        if registered is not None:
            registered.discard(subscription)
            if not registered:
                del _subscriptions[subscription.key]
