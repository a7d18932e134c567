"""A small in-process cache with a time limit, for reads that may be a few seconds stale.

A warm Lambda (or the local stack's one process) answers many requests; re-reading the same
credential or runtime list from DynamoDB for each costs a round trip on every hot path. Entries
are dropped at once when this process changes what they mirror; other processes see a change
within `ttl_seconds`.
"""

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class TtlCache(Generic[Value]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, Value]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, value = entry
            if time.monotonic() - stored_at >= self.ttl_seconds:
                del self._entries[key]
                return None
            return value

    def put(self, key: Hashable, value: Value) -> None:
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude but bounded; a full cache is a cold cache
            self._entries[key] = (time.monotonic(), value)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
