"""Delivering spooled events to the API: each claim by its own courier, in order, in batches that
stay well inside what the API accepts.

Claims are independent: each has a courier task of its own, with its own backoff, so a job whose
events the API refuses or chokes on never holds up another job's. Within a claim, events go in
sequence order, at most BATCH_MAX_EVENTS and BATCH_MAX_BYTES per request (a half and a quarter of
the contract's limits: an API that stores a batch in one transaction with a few writes of its own
stays within DynamoDB's 100 actions).

What an answer means for the batch:
- 2xx: delivered; the API may also say that a user asked to cancel the job.
- unreachable, 5xx, 429 (and 401, which the heartbeat turns into re-registering): retried with
  backoff. A 5xx also halves the next batch, in case it is the batch's size that the API fails on.
  After a refusal, batches grow back by doubling with each delivered one.
- 409: another worker owns the job now; 403 or 404: the job is not this runtime's, or gone. The
  claim's events are dropped and its job stopped (`on_dropped`).
- any other 4xx (400, 413, 422, ...): this batch cannot be delivered as it is. It is split; a
  single refused event is replaced by a small marker with the same sequence number, step and
  status (so the stream keeps no gap and a final event still ends the job); a refused marker is
  skipped. Each step is logged, never the event's content.
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.contract.logs import log
from app.contract.messages import EVENT_BATCH_MAX_BYTES, EVENT_BATCH_MAX_EVENTS, EventBatch, EventIn
from workers.api_client import ApiError, ApiUnavailable, RequestRejected, RuntimeApiClient, StaleClaim, Unauthorized
from workers.retry import Retry
from workers.spool import EventSpool, SpoolClaim, SpoolClosed

BATCH_MAX_EVENTS = EVENT_BATCH_MAX_EVENTS // 2
BATCH_MAX_BYTES = EVENT_BATCH_MAX_BYTES // 4
UNDELIVERABLE_KEY = "undeliverable"  # the marker's data: {"undeliverable": {"status": 413, "error": "..."}}

logger = logging.getLogger("berth.worker.spool")

# The failures a later attempt may overcome.
_UNREACHABLE = (ApiUnavailable, Unauthorized)
# The API says the job's events have no place there at all.
_NOT_THIS_RUNTIMES = frozenset({403, 404})


@dataclass
class _Delivery:
    """One claim's courier state: how large its next batch may be."""

    claim_id: str
    max_events: int = BATCH_MAX_EVENTS
    job_id: str = ""
    last_batch: int = 0

    def delivered(self) -> None:
        # Back up to full batches by doubling, so a refused event costs a few requests, not one per event.
        self.max_events = min(BATCH_MAX_EVENTS, self.max_events * 2)

    def failed(self, error: Exception, delay: float) -> None:
        if isinstance(error, ApiUnavailable) and error.status >= 500 and self.last_batch > 1:
            self.max_events = max(1, self.last_batch // 2)
        log(logger, logging.WARNING, "event delivery failed; will retry", job_id=self.job_id, error=str(error),
            retry_in_seconds=round(delay, 2), next_batch=self.max_events)


class EventSender:
    """Delivers each claim's spooled events (see the module's docstring); `on_dropped` hears of a
    claim whose events were dropped, `on_cancel_requested` of a job a user asked to cancel."""

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
        self._couriers: dict[str, asyncio.Task] = {}
        self._dirty: set[str] = set()  # claims with events spooled since their courier last looked
        self._drained = asyncio.Event()
        self._drained.set()
        self._settled: dict[str, asyncio.Future[bool]] = {}

    def notify(self, claim_id: str) -> None:
        """New events were spooled for this claim."""
        self._dirty.add(claim_id)
        if claim_id not in self._couriers:
            self._couriers[claim_id] = asyncio.create_task(self._courier(claim_id), name=f"courier-{claim_id}")
            self._drained.clear()

    async def run(self) -> None:
        """Deliver what a previous run left, then wait; on cancellation, stop every courier."""
        try:
            await self._notify_pending()
            await asyncio.Event().wait()
        finally:
            couriers = list(self._couriers.values())
            for courier in couriers:
                courier.cancel()
            await asyncio.gather(*couriers, return_exceptions=True)

    async def flush(self, timeout: float | None) -> bool:
        """Wait until nothing is pending (True) or `timeout` passes (False); None waits as long as it takes."""
        await self._notify_pending()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def finish(self, claim_id: str) -> bool:
        """Close the claim and wait until it settles: True once nothing of it is left to deliver,
        False if it was dropped (stale claim, or not this runtime's)."""
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
                    self.notify(claim_id)
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

    async def _notify_pending(self) -> None:
        for claim in await asyncio.to_thread(self._spool.pending_claims):
            self.notify(claim.claim_id)

    # --- one claim's courier ----------------------------------------------------------------

    async def _courier(self, claim_id: str) -> None:
        delivery = _Delivery(claim_id)
        try:
            await asyncio.sleep(self._coalesce_seconds)  # let a burst of emits share one request
            while True:
                self._dirty.discard(claim_id)
                more = await self._retry.until_done(functools.partial(self._deliver_next, delivery),
                                                    retry_on=_UNREACHABLE, on_failure=delivery.failed)
                # Events spooled while the last look found none are looked at again; the check and
                # the courier's exit happen with no await between, so none is missed.
                if not more and claim_id not in self._dirty:
                    return
        finally:
            del self._couriers[claim_id]
            if not self._couriers:
                self._drained.set()

    async def _deliver_next(self, delivery: _Delivery) -> bool:
        """Send the claim's next batch and settle what the answer says; False when nothing is left."""
        found = await asyncio.to_thread(self._spool.batch, delivery.claim_id, delivery.max_events, BATCH_MAX_BYTES)
        if found is None:
            return False
        claim, events = found
        delivery.job_id, delivery.last_batch = claim.job_id, len(events)
        try:
            result = await self._api.post_events(claim.workspace_id, claim.job_id,
                                                 EventBatch(claim_id=claim.claim_id, events=events))
        except StaleClaim:
            log(logger, logging.WARNING, "claim is stale; dropping its spooled events", job_id=claim.job_id)
            await self._drop_claim(claim)
            return False
        except RequestRejected as exc:
            if exc.status in _NOT_THIS_RUNTIMES:
                log(logger, logging.ERROR, "the API refuses this job's events; dropping them", job_id=claim.job_id,
                    error=str(exc))
                await self._drop_claim(claim)
                return False
            await self._undeliverable(delivery, claim, events, exc)
            return True
        delivery.delivered()
        if await asyncio.to_thread(self._spool.mark_delivered, claim.claim_id, events[-1].seq):
            self._settle(claim.claim_id, True)
        if result.cancel_requested:
            self._on_cancel_requested(claim.claim_id)
        return True

    async def _drop_claim(self, claim: SpoolClaim) -> None:
        await self.drop(claim.claim_id)
        self._on_dropped(claim.claim_id)

    async def _undeliverable(self, delivery: _Delivery, claim: SpoolClaim, events: list[EventIn],
                             error: ApiError) -> None:
        """The API refused this batch as it is (a 4xx that is no verdict on the claim): shrink it."""
        if len(events) > 1:
            delivery.max_events = max(1, len(events) // 2)
            log(logger, logging.WARNING, "the API refused a batch of events; sending smaller ones", job_id=claim.job_id,
                events=len(events), error=str(error))
            return
        event = events[0]
        if UNDELIVERABLE_KEY not in event.data:
            log(logger, logging.ERROR, "the API refused an event; sending a marker in its place", job_id=claim.job_id,
                seq=event.seq, step=event.step, error=str(error))
            await asyncio.to_thread(self._spool.replace, claim.claim_id, undeliverable_marker(event, error))
            return
        log(logger, logging.ERROR, "the API refused the marker of an undeliverable event too; skipping it",
            job_id=claim.job_id, seq=event.seq, error=str(error))
        if await asyncio.to_thread(self._spool.mark_delivered, claim.claim_id, event.seq):
            self._settle(claim.claim_id, True)


def undeliverable_marker(event: EventIn, error: ApiError) -> EventIn:
    """What goes in place of an event the API refused: its sequence number, step and status, and why."""
    reason = error.message[:500]
    return EventIn(seq=event.seq, step=event.step, status=event.status,
                   message=f"this event was not delivered: the API refused it ({error.status}: {reason})",
                   data={UNDELIVERABLE_KEY: {"status": error.status, "error": reason}})
