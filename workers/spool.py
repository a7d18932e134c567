"""Job events on their way to the API: a durable on-disk spool (`workers.event_sender` delivers it).

Every event is appended, fsync'd, to its claim's file before `ctx.emit` returns, so nothing is
lost while the API is unreachable or if the worker dies. An event is made to fit the contract's
limits before it is spooled (`fit_event`), so the API never has a reason to refuse it for size.
One file per claim (`<claim_id>.jsonl` under `<data_dir>/spool/`): a header line naming the
claim, workspace and job, then one event per line in sequence order. Delivered events are removed
by rewriting the file atomically; a claim's file goes away once it is closed (no more events will
come) and fully delivered, or when the API says the claim is stale. Files left by a previous run
are loaded closed and delivered.

The spool is used from worker threads (`asyncio.to_thread`, so fsync never stalls the event
loop); one lock serialises it, and sequence numbers are assigned under that lock, so a job's file
order is its sequence order however its emits interleave.
"""

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.contract.logs import log
from app.contract.messages import EVENT_DATA_MAX_BYTES, EVENT_MESSAGE_MAX_CHARS, EventIn, EventStatus
from workers.config import safe_path_component

SPOOL_FORMAT = 1
TRUNCATED_SUFFIX = " … [truncated]"
TRUNCATED_PREVIEW_CHARS = 2000

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
            message, data = fit_event(step, status, message, data or {})
            event = EventIn(seq=entry.next_seq, step=step, status=EventStatus(status), message=message, data=data)
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

    def pending(self, claim_id: str, limit: int | None = None) -> list[EventIn]:
        with self._lock:
            entry = self._logs.get(claim_id)
            return list(entry.pending[:limit]) if entry else []

    def batch(self, claim_id: str, max_events: int, max_bytes: int) -> tuple[SpoolClaim, list[EventIn]] | None:
        """The claim's next undelivered events, at most `max_events` and, beyond the first,
        `max_bytes` as JSON; None when nothing is pending (or the claim is gone)."""
        with self._lock:
            entry = self._logs.get(claim_id)
            if entry is None or not entry.pending:
                return None
            events: list[EventIn] = []
            size = 0
            for event in entry.pending[:max_events]:
                size += len(event.model_dump_json())
                if events and size > max_bytes:
                    break
                events.append(event)
            return entry.claim, events

    def replace(self, claim_id: str, event: EventIn) -> None:
        """Put `event` in place of the pending event with its sequence number, durably."""
        with self._lock:
            entry = self._logs.get(claim_id)
            if entry is None:
                return
            entry.pending = [event if pending.seq == event.seq else pending for pending in entry.pending]
            self._write(entry)

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


def fit_event(step: str, status: str, message: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The message and data cut to the contract's limits, saying so: a longer message ends with
    TRUNCATED_SUFFIX; data over EVENT_DATA_MAX_BYTES (as compact JSON) becomes
    `{"truncated": true, "bytes": N, "preview": "<its first 2,000 characters>"}`, in place of the
    result for a job's `complete` event (`{"result": {"truncated": ...}}`), so it stays a result."""
    if len(message) > EVENT_MESSAGE_MAX_CHARS:
        message = message[:EVENT_MESSAGE_MAX_CHARS - len(TRUNCATED_SUFFIX)] + TRUNCATED_SUFFIX
    encoded = json.dumps(data, default=str, separators=(",", ":"))
    if len(encoded.encode()) <= EVENT_DATA_MAX_BYTES:
        return message, data
    marker = {"truncated": True, "bytes": len(encoded.encode()), "preview": encoded[:TRUNCATED_PREVIEW_CHARS]}
    if step == "job" and status == EventStatus.complete.value and "result" in data:
        return message, {"result": marker}
    return message, marker
