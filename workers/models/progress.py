"""Download progress out of huggingface_hub, and how often it is worth an event.

`snapshot_download(tqdm_class=...)` creates several bars from that one class, told apart by their
`desc`: "Fetching N files" (advanced by one per finished file, in the pulling thread), "Downloading
bytes" (network bytes) and "Reconstructing ..." (bytes written into the cache; the same count for
plain HTTP, and the one that matters). Their updates come from the download threads, once per
chunk that huggingface_hub hands over (`constants.DOWNLOAD_CHUNK_SIZE`, 10 MiB).

The bars render nothing. Each update lands in a `DownloadMeter` the job samples, and is also where
a stop request reaches the download threads: the next chunk raises `PullAborted` (huggingface_hub
then deletes the partial file, keeping every finished one).
"""

import threading
from collections.abc import Callable

from tqdm.auto import tqdm


class PullAborted(Exception):
    """Raised inside huggingface_hub's download threads to stop a pull."""


class _Discard:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class DownloadMeter:
    """Bytes written and files finished so far, updated by the download threads."""

    def __init__(self, abort: threading.Event, on_file_done: Callable[[], None] = lambda: None):
        self.abort = abort
        self._on_file_done = on_file_done
        self._lock = threading.Lock()
        self._bytes = 0
        self._files = 0

    def sample(self) -> tuple[int, int]:
        with self._lock:
            return self._bytes, self._files

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self._bytes += count
        if self.abort.is_set():
            raise PullAborted()

    def file_done(self) -> None:
        with self._lock:
            self._files += 1
        self._on_file_done()

    def bar_class(self) -> type[tqdm]:
        """A tqdm class for `snapshot_download(tqdm_class=...)` that reports into this meter."""
        meter = self

        class MeterBar(tqdm):
            def __init__(self, *args, **kwargs):
                desc = str(kwargs.get("desc") or "")
                self._counts = "files" if desc.startswith("Fetching") else (
                    "bytes" if desc.startswith("Reconstructing") else None)
                kwargs.update(file=_Discard(), disable=False, mininterval=1.0)
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                shown = super().update(n)
                if self._counts == "bytes":
                    meter.add_bytes(int(n or 0))
                elif self._counts == "files":
                    meter.file_done()
                return shown

        return MeterBar


class ProgressThrottle:
    """Whether a byte count deserves an event: never more than twice a second, and then only for
    a step of at least 1 % of the total, or after 5 s without one. So a fast pull costs at most
    about a hundred events and a slow one one every few seconds, however large the model."""

    MIN_INTERVAL_SECONDS = 0.5
    STEP_FRACTION = 0.01
    HEARTBEAT_SECONDS = 5.0

    def __init__(self, total: int, now: float):
        self._total = max(total, 1)
        self._last_done = 0
        self._last_at = now

    def due(self, done: int, now: float) -> bool:
        if done == self._last_done or now - self._last_at < self.MIN_INTERVAL_SECONDS:
            return False
        if done - self._last_done < self.STEP_FRACTION * self._total and now - self._last_at < self.HEARTBEAT_SECONDS:
            return False
        self._last_done, self._last_at = done, now
        return True
