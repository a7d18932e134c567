"""The runtime's side of a job: claims (leases), their renewal and release, event ingestion, and
control replies. A runtime acts only on its own workspace's jobs, a shared runtime on any
workspace's (app.domain.runtimes.serves_workspace); anything else is 404, as if the job did not
exist.

A batch of events is checked whole before anything is stored (sequence numbers distinct: 422; no
event's data over the contract's EVENT_DATA_MAX_BYTES: 413), then stored in transactions within
DynamoDB's limit, each fenced by the claim, each event only-if-new.
"""

import json

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import (
    EVENT_DATA_MAX_BYTES,
    ClaimRequest,
    ClaimResponse,
    ControlReply,
    EventBatch,
    EventBatchResult,
    EventIn,
    EventStatus,
    JobStatus,
)
from app.domain.jobs import JOB_STEP, Claim, Job, JobEvent, ending_status
from app.domain.models import ProgressUpdate, progress_update
from app.domain.runtimes import serves_workspace
from app.errors import ConditionFailed, Conflict, NotFound, PayloadTooLarge, Unprocessable
from app.ids import new_id
from app.services.event_feed import EventFeed
from app.services.lifecycle import JobLifecycle
from app.store import Store
from app.store.table import Write

REPLY_TTL_SECONDS = 300


def check_batch(batch: EventBatch) -> None:
    """422 for a batch that repeats a sequence number; 413 for an event whose data, as compact JSON
    (measured as the worker measures it before spooling), is over EVENT_DATA_MAX_BYTES."""
    seqs = [event.seq for event in batch.events]
    if len(set(seqs)) != len(seqs):
        repeated = sorted({seq for seq in seqs if seqs.count(seq) > 1})
        raise Unprocessable(f"a batch gives each sequence number once; repeated: {repeated[:10]}")
    for event in batch.events:
        size = len(json.dumps(event.data, separators=(",", ":")).encode())
        if size > EVENT_DATA_MAX_BYTES:
            raise PayloadTooLarge(f"event {event.seq}: its data is {size} bytes as JSON, over the limit of "
                                  f"{EVENT_DATA_MAX_BYTES} (EVENT_DATA_MAX_BYTES); send a smaller summary")


class RuntimeProtocol:
    def __init__(self, store: Store, lifecycle: JobLifecycle, feed: EventFeed, clock: Clock):
        self.store = store
        self.lifecycle = lifecycle
        self.feed = feed
        self.clock = clock

    def _check_workspace(self, runtime: Principal, workspace_id: str, what: str) -> None:
        if not serves_workspace(runtime.workspace_id, workspace_id):
            raise NotFound(f"no {what}")

    def job(self, runtime: Principal, workspace_id: str, job_id: str) -> Job:
        """A job as a runtime may see it."""
        self._check_workspace(runtime, workspace_id, f"job {job_id}")
        job = self.store.jobs.get(workspace_id, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    # --- claims ---------------------------------------------------------------------------------

    def claim(self, runtime: Principal, workspace_id: str, job_id: str, request: ClaimRequest) -> ClaimResponse:
        """Grant this delivery the job and record its `start` event, in one transaction.

        A first delivery names the start event's place (`start_seq`, from the message), so the claim
        is one conditional write. Anything else (a redelivery after a lapsed lease, a message from
        before a re-dispatch) reads the job first."""
        self._check_workspace(runtime, workspace_id, f"job {job_id}")
        now = self.clock.now()
        if request.start_seq:
            claim = self._claim(runtime, request, now, starts=True)
            first = self.store.jobs.claim_first(workspace_id, job_id, claim, request.start_seq)
            granted = self._grant(runtime, workspace_id, job_id, request, claim, first, request.start_seq, now)
            if granted is not None:
                return granted
        job = self.job(runtime, workspace_id, job_id)
        if job.is_final:
            return ClaimResponse(claimed=False, status=job.status, reason=f"job is {job.status.value}")
        if job.runtime_id != runtime.subject_id or job.dispatch != request.dispatch:
            return ClaimResponse(claimed=False, status=job.status, reason="job was dispatched elsewhere")
        # Re-claim only a lapsed lease: the previous claimant stopped renewing, so it is gone.
        if job.lease_is_live(now):
            return ClaimResponse(claimed=False, status=job.status, reason="job is claimed by a live worker")
        claim = self._claim(runtime, request, now, starts=not job.started_at)
        again = self.store.jobs.claim_again(workspace_id, job_id, claim, job.claim_id)
        seq = self.store.jobs.last_seq(workspace_id, job_id) + 1
        granted = self._grant(runtime, workspace_id, job_id, request, claim, again, seq, now)
        if granted is not None:
            return granted
        current = self.store.jobs.get(workspace_id, job_id)
        return ClaimResponse(claimed=False, status=current.status if current else job.status,
                             reason="claimed concurrently")

    def _claim(self, runtime: Principal, request: ClaimRequest, now: float, *, starts: bool) -> Claim:
        return Claim(claim_id=new_id("clm"), runtime_id=runtime.subject_id, dispatch=request.dispatch,
                     worker_id=request.worker_id, lease_until=now + request.lease_seconds,
                     started_at=self.clock.iso(now) if starts else None, started_epoch=now if starts else None)

    def _grant(self, runtime: Principal, workspace_id: str, job_id: str, request: ClaimRequest, claim: Claim,
               write: Write, start_seq: int, now: float) -> ClaimResponse | None:
        start = JobEvent(seq=start_seq, step=JOB_STEP, status=EventStatus.start,
                         message=f"started on runtime {runtime.subject_id}", at=self.clock.iso(now),
                         data={"runtime_id": runtime.subject_id, "attempt": request.attempt,
                               "worker_id": request.worker_id})
        try:
            self.store.table.transact([write, self.store.jobs.add_event(workspace_id, job_id, start)])
        except ConditionFailed:
            return None
        self.feed.publish(workspace_id, job_id, [start])
        return ClaimResponse(claimed=True, status=JobStatus.running, claim_id=claim.claim_id, next_seq=start_seq + 1)

    def renew_lease(self, runtime: Principal, workspace_id: str, job_id: str, claim_id: str,
                    lease_seconds: int) -> bool:
        """Extend a claim; returns whether cancellation was requested. Conflict when the claim is stale."""
        self._check_workspace(runtime, workspace_id, f"job {job_id}")
        try:
            job = self.store.jobs.renew_lease(workspace_id, job_id, claim_id, self.clock.now() + lease_seconds)
        except ConditionFailed as error:
            raise Conflict("stale claim: the job is finished or owned by another worker") from error
        return job.cancel_requested

    def release(self, runtime: Principal, workspace_id: str, job_id: str, claim_id: str) -> bool:
        """The claimant lets the job go unfinished (its worker is stopping): back to `queued` at once
        and dispatched again, not to this runtime, which is draining from now (its next heartbeat
        says so anyway, or that it is back); a job whose user asked to cancel it ends `cancelled`
        instead. Returns whether cancellation was requested; Conflict when the claim is stale."""
        job = self.job(runtime, workspace_id, job_id)
        if job.claim_id != claim_id or job.is_final:
            raise Conflict("stale claim: the job is finished or owned by another worker")
        self.store.runtimes.mark_draining(runtime.workspace_id, runtime.subject_id)
        if job.cancel_requested:
            event = self.lifecycle.next_event(job, JOB_STEP, EventStatus.cancelled,
                                              "cancelled: its runtime let it go before it stopped")
            ended = self.lifecycle.finish(job, JobStatus.cancelled, event=event, claim_id=claim_id)
        else:
            ended = self.lifecycle.requeue(job, f"runtime {runtime.subject_id} let the job go (it is stopping); "
                                                "dispatching again", claim_id=claim_id, elsewhere=True)
        if not ended:
            raise Conflict("stale claim: the job is finished or owned by another worker")
        return job.cancel_requested

    # --- events ---------------------------------------------------------------------------------

    def ingest_events(self, runtime: Principal, workspace_id: str, job_id: str, batch: EventBatch) -> EventBatchResult:
        self._check_workspace(runtime, workspace_id, f"job {job_id}")
        check_batch(batch)
        incoming_events = batch.events
        stored = 0
        if not any(ending_status(event.step, event.status) is not None for event in incoming_events):
            stored = self._store_progress(workspace_id, job_id, batch)
            if stored == len(incoming_events):
                self._record_model_progress(workspace_id, job_id, batch)
                return EventBatchResult(accepted=stored, duplicates=0, job_status=JobStatus.running)
            incoming_events = incoming_events[stored:]
        job = self.job(runtime, workspace_id, job_id)
        if job.claim_id != batch.claim_id:
            raise Conflict("stale claim: the job is owned by another worker")
        if job.is_final:
            # The claimant that finished the job is retrying a batch whose answer it lost.
            return EventBatchResult(accepted=stored, duplicates=len(incoming_events), job_status=job.status)
        self._record_model_progress(workspace_id, job_id, batch)  # before the job ends, which says less of why
        accepted, duplicates = stored, 0
        final: tuple[JobStatus, EventIn, JobEvent] | None = None
        for incoming in incoming_events:
            event = self._event(incoming)
            ends_with = ending_status(incoming.step, incoming.status)
            if ends_with is not None:
                final = (ends_with, incoming, event)
                continue
            try:
                self.store.jobs.put_event(workspace_id, job_id, event)
                accepted += 1
                self.feed.publish(workspace_id, job_id, [event])
            except ConditionFailed:
                duplicates += 1
        status = job.status
        if final is not None:
            final_status, incoming, event = final
            result = incoming.data.get("result", incoming.data) if final_status == JobStatus.complete else None
            error = None if final_status == JobStatus.complete else incoming.message or incoming.status.value
            if self.lifecycle.finish(job, final_status, result=result, error=error, event=event,
                                     claim_id=batch.claim_id):
                accepted += 1
                status = final_status
            else:
                current = self.store.jobs.get(workspace_id, job_id)
                status = current.status if current else status
                duplicates += 1
        else:
            self.store.jobs.note_progress(workspace_id, job_id, batch.claim_id, self.clock.iso())
        return EventBatchResult(accepted=accepted, duplicates=duplicates, job_status=status,
                                cancel_requested=job.cancel_requested)

    def _event(self, incoming: EventIn) -> JobEvent:
        return JobEvent(seq=incoming.seq, step=incoming.step, status=incoming.status, message=incoming.message,
                        data=incoming.data, at=self.clock.iso())

    def _store_progress(self, workspace_id: str, job_id: str, batch: EventBatch) -> int:
        """The common case, in as few transactions as DynamoDB allows (one for up to 99 events): new
        events from the live claimant of a running job that nobody asked to cancel. Returns how many
        of the batch's first events were stored; the rest (after a part that wrote nothing: an event
        stored before, a stale claim, a cancel) is for the careful path to sort out."""
        events = [self._event(incoming) for incoming in batch.events]
        stored = 0
        for part, writes in self.store.jobs.progress_in_parts(workspace_id, job_id, batch.claim_id, events,
                                                              self.clock.iso()):
            try:
                self.store.table.transact(writes)
            except ConditionFailed:
                break
            self.feed.publish(workspace_id, job_id, part)
            stored += len(part)
        return stored

    def _record_model_progress(self, workspace_id: str, job_id: str, batch: EventBatch) -> None:
        """A model job's progress moves its installation (after the events: a transaction of events
        may already hold DynamoDB's 100 items)."""
        update = _model_progress(batch)
        if update is None:
            return
        try:
            self.store.table.transact([self.store.models.record_progress(workspace_id, job_id, update,
                                                                         self.clock.iso())])
        except ConditionFailed:
            pass  # gone, another job's, or already further on
        self.store.models.forget(workspace_id)

    # --- control replies ------------------------------------------------------------------------

    def store_reply(self, runtime: Principal, workspace_id: str, request_id: str, reply: ControlReply) -> None:
        """Keep a worker's answer for the API request waiting on it; a retried reply changes nothing."""
        self._check_workspace(runtime, workspace_id, f"request {request_id}")
        self.store.replies.add(workspace_id, request_id, reply, runtime.subject_id,
                               int(self.clock.now()) + REPLY_TTL_SECONDS)


def _model_progress(batch: EventBatch) -> ProgressUpdate | None:
    return progress_update((event.seq, event.message, event.data) for event in batch.events)
