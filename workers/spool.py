"""Job events on their way to the API: a durable on-disk spool and the task that delivers it.

Every event is appended, fsync'd, to its claim's file before `ctx.emit` returns, so nothing is
lost while the API is unreachable or if the worker dies. One file per claim (`<claim_id>.jsonl`
under `<data_dir>/spool/`): a header line naming the claim, workspace and job, then one event
per line in sequence order. Delivered events are removed by rewriting the file atomically; a
claim's file goes away once it is closed (no more events will come) and fully delivered, or when
the API says the claim is stale. Files left by a previous run are loaded closed and delivered.

The spool is used from worker threads (`asyncio.to_thread`, so fsync never stalls the event
loop); one lock serialises it, and sequence numbers are assigned under that lock, so a job's file
order is its sequence order however its emits interleave.
"""

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.contract.logs import log
from app.contract.messages import EventBatch, EventIn, EventStatus
from workers.api_client import ApiUnavailable, RequestRejected, RuntimeApiClient, StaleClaim, Unauthorized
from workers.config import safe_path_component
from workers.retry import Retry

MAX_BATCH = 100  # EventBatch's limit
MAX_MESSAGE_CHARS = 4000  # EventIn.message's limit; longer messages are cut, not refused
SPOOL_FORMAT = 1

logger = logging.getLogger("berth.worker.spool")


class SpoolClosed(Exception):
    """The claim no longer takes events: it was closed, or dropped as stale."""


@dataclass(frozen=True)
class SpoolClaim:
    claim_id: str
    workspace_id: str
    job_id: str


@dataclass
class _ClaimLog:
    claim: SpoolClaim
    path: Path
    next_seq: int
    open: bool
    pending: list[EventIn] = field(default_factory=list)


class EventSpool:
    def __init__(self, directory: Path):
        self._directory = directory
        self._lock = threading.Lock()
        self._logs: dict[str, _ClaimLog] = {}
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._load_leftovers()

    def open(self, claim: SpoolClaim, next_seq: int) -> None:
        path = self._directory / f"{safe_path_component(claim.claim_id)}.jsonl"
        with self._lock:
            entry = _ClaimLog(claim=claim, path=path, next_seq=next_seq, open=True)
            self._write(entry)
            self._logs[claim.claim_id] = entry

    def append(
        self, claim_id: str, step: str, status: str, message: str = "", data: dict[str, Any] | None = None
    ) -> EventIn:
        """Assign the claim's next sequence number and make the event durable; returns it."""
        with self._lock:
            entry = self._logs.get(claim_id)
            if entry is None or not entry.open:
                raise SpoolClosed(claim_id)
            event = EventIn(
                seq=entry.next_seq, step=step, status=EventStatus(status), message=message[:MAX_MESSAGE_CHARS],
                data=data or {},
            )
            with open(entry.path, "a", encoding="utf-8") as handle:
                handle.write(_line(event.model_dump(mode="json")))
                handle.flush()
                os.fsync(handle.fileno())
            entry.pending.append(event)
            entry.next_seq += 1
            return event

    def close(self, claim_id: str) -> bool:
        """No more events for this claim. True when nothing is left to deliver (its file is gone);
        SpoolClosed when the claim was already dropped."""
        with self._lock:
            entry = self._logs.get(claim_id)
            if entry is None:
                raise SpoolClosed(claim_id)
            entry.open = False
            return self._remove_if_settled(entry)

    def pending_claims(self) -> list[SpoolClaim]:
        with self._lock:
            return [entry.claim for entry in self._logs.values() if entry.pending]

    def pending(self, claim_id: str, limit: int = MAX_BATCH) -> list[EventIn]:
        with self._lock:
            entry = self._logs.get(claim_id)
            return list(entry.pending[:limit]) if entry else []

    def mark_delivered(self, claim_id: str, through_seq: int) -> bool:
        """Remove events up to `through_seq`. True when the claim is settled and its file gone."""
        with self._lock:
            entry = self._logs.get(claim_id)
            if entry is None:  # dropped meanwhile: `drop` already settled it
                return False
            entry.pending = [event for event in entry.pending if event.seq > through_seq]
            if self._remove_if_settled(entry):
                return True
            self._write(entry)
            return False

    def drop(self, claim_id: str) -> None:
        with self._lock:
            entry = self._logs.pop(claim_id, None)
            if entry is not None:
                entry.path.unlink(missing_ok=True)

    def _remove_if_settled(self, entry: _ClaimLog) -> bool:
        if entry.open or entry.pending:
            return False
        self._logs.pop(entry.claim.claim_id, None)
        entry.path.unlink(missing_ok=True)
        return True

    def _write(self, entry: _ClaimLog) -> None:
        """Replace the claim's file with its header and pending events, atomically and durably."""
        header = {"spool": SPOOL_FORMAT, **asdict(entry.claim)}
        temporary = entry.path.with_name(entry.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(_line(header))
            handle.writelines(_line(event.model_dump(mode="json")) for event in entry.pending)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, entry.path)
        _fsync_directory(self._directory)

    def _load_leftovers(self) -> None:
        for temporary in self._directory.glob("*.jsonl.tmp"):
            temporary.unlink()  # an interrupted rewrite; the file it was replacing is intact
        for path in sorted(self._directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            entry = _read(path)
            if entry is None:
                continue
            if entry.pending:
                self._logs[entry.claim.claim_id] = entry
            else:
                path.unlink()


def _read(path: Path) -> _ClaimLog | None:
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0])
        claim = SpoolClaim(claim_id=header["claim_id"], workspace_id=header["workspace_id"], job_id=header["job_id"])
    except (IndexError, ValueError, KeyError, TypeError):
        log(logger, logging.ERROR, "spool file has no readable header; left in place", path=str(path))
        return None
    events: list[EventIn] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            events.append(EventIn.model_validate_json(line))
        except ValidationError:
            # Only the last line can be torn (a crash mid-append, before emit returned).
            log(logger, logging.WARNING, "unreadable spool line skipped", path=str(path), line=number)
    next_seq = events[-1].seq + 1 if events else 1
    return _ClaimLog(claim=claim, path=path, next_seq=next_seq, open=False, pending=events)


def _line(record: dict) -> str:
    # default=str: an executor's odd value (a datetime, a Path) is kept as text rather than lost.
    return json.dumps(record, default=str, separators=(",", ":")) + "\n"


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# The failures a later delivery round may overcome.
_UNREACHABLE = (ApiUnavailable, Unauthorized)


class EventSender:
    """Delivers spooled events in order, up to `MAX_BATCH` per request, one claim after another.

    Retries with backoff while the API is unreachable (or answers 5xx/429/401: a revoked token is
    the heartbeat's to handle). A 409 means another worker owns the job now, and any other 4xx
    that resending cannot fix; either way the claim's events are dropped and `on_dropped` is told,
    so its job stops. `on_cancel_requested` hears when the API reports that a user asked to cancel
    the job.
    """

    def __init__(
        self,
        spool: EventSpool,
        api: RuntimeApiClient,
        retry: Retry,
        on_dropped: Callable[[str], None] = lambda claim_id: None,
        on_cancel_requested: Callable[[str], None] = lambda claim_id: None,
        coalesce_seconds: float = 0.005,
    ):
        self._spool = spool
        self._api = api
        self._retry = retry
        self._on_dropped = on_dropped
        self._on_cancel_requested = on_cancel_requested
        self._coalesce_seconds = coalesce_seconds
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._settled: dict[str, asyncio.Future[bool]] = {}

    def notify(self) -> None:
        """New events were spooled."""
        self._drained.clear()
        self._wake.set()

    async def run(self) -> None:
        self.notify()  # leftovers from a previous run go first
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._coalesce_seconds)  # let a burst of emits share one request
            while await asyncio.to_thread(self._spool.pending_claims):
                await self._retry.until_done(self._deliver_round, retry_on=_UNREACHABLE)
            if not self._wake.is_set():  # nothing was spooled while the last check ran
                self._drained.set()

    async def flush(self, timeout: float | None) -> bool:
        """Wait until nothing is pending (True) or `timeout` passes (False); None waits as long as it takes."""
        self.notify()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def finish(self, claim_id: str) -> bool:
        """Close the claim and wait until it settles: True once every event was delivered, False
        if it was dropped (stale claim, or refused by the API)."""
        # Registered before closing, so a delivery that completes meanwhile still resolves it.
        settled = self._settled.setdefault(claim_id, asyncio.get_running_loop().create_future())
        try:
            try:
                delivered_already = await asyncio.to_thread(self._spool.close, claim_id)
            except SpoolClosed:
                self._settle(claim_id, False)
            else:
                if delivered_already:
                    self._settle(claim_id, True)
                else:
                    self.notify()
            return await settled
        finally:
            self._settled.pop(claim_id, None)

    async def drop(self, claim_id: str) -> None:
        await asyncio.to_thread(self._spool.drop, claim_id)
        self._settle(claim_id, False)

    def _settle(self, claim_id: str, delivered: bool) -> None:
        future = self._settled.get(claim_id)
        if future is not None and not future.done():
            future.set_result(delivered)

    async def _deliver_round(self) -> None:
        """One batch per pending claim, until the API is unreachable (raised: the round is retried)."""
        for claim in await asyncio.to_thread(self._spool.pending_claims):
            events = await asyncio.to_thread(self._spool.pending, claim.claim_id, MAX_BATCH)
            if not events:
                continue
            batch = EventBatch(claim_id=claim.claim_id, events=events)
            try:
                result = await self._api.post_events(claim.workspace_id, claim.job_id, batch)
            except _UNREACHABLE as exc:
                log(logger, logging.WARNING, "event delivery failed; will retry", job_id=claim.job_id, error=str(exc))
                raise
            except StaleClaim:
                log(logger, logging.WARNING, "claim is stale; dropping its spooled events", job_id=claim.job_id)
                await self.drop(claim.claim_id)
                self._on_dropped(claim.claim_id)
                continue
            except RequestRejected as exc:
                # Resending the same batch cannot succeed; keeping it would block the claim forever.
                log(logger, logging.ERROR, "API refused events; dropping them", job_id=claim.job_id, error=str(exc))
                await self.drop(claim.claim_id)
                self._on_dropped(claim.claim_id)
                continue
            if await asyncio.to_thread(self._spool.mark_delivered, claim.claim_id, events[-1].seq):
                self._settle(claim.claim_id, True)
            if result.cancel_requested:
                self._on_cancel_requested(claim.claim_id)
