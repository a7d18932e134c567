"""Jobs: creation, the state machine, claims, events and cancellation.

States follow the spec: queued → running → complete | error | expired | cancelled, plus
running → queued when a runtime fails and the job is re-dispatched. Every transition is a
conditional write that names the states it may leave, so nothing ever leaves a final state; a
final transition also releases the workspace's and the runtime's slot in the same transaction,
so counts cannot drift.
"""

import asyncio
import json
import time

from app import clock
from app.auth.principal import Principal
from app.errors import ConditionFailed, Conflict, NotFound, TooManyRequests, Unprocessable
from app.ids import new_id
from app.logs import get_logger, log_event
from app.contract.messages import (FINAL_JOB_STATUSES, ClaimRequest, ClaimResponse, EventBatch, EventBatchResult,
    EventStatus, JobStatus, JobType)
from app.schemas.jobs import CancelResponse, CreateJobRequest, CreateJobResponse, JobView, validate_payload
from app.services import control, dispatch, event_feed
from app.services.activity import audit, audit_write, log_audit, meter, meter_write
from app.settings import get_settings
from app.store import get_store
from app.store.accounts import workspace_pk
from app.store.runtimes import SHARED_WORKSPACE
from app.store.table import Condition, Write

logger = get_logger("berth.jobs")

RETENTION_SECONDS = 30 * 24 * 3600
CANCEL_DELIVERY_SECONDS = 60  # how long a cancel may wait for its worker to read it
_OPEN = [s.value for s in JobStatus if s not in FINAL_JOB_STATUSES]
_FINAL_EVENT_STATUS = {
    EventStatus.complete: JobStatus.complete,
    EventStatus.error: JobStatus.error,
    EventStatus.cancelled: JobStatus.cancelled,
    EventStatus.expired: JobStatus.expired,
}


def events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


def view(job: dict) -> JobView:
    return JobView(
        job_id=job["job_id"], type=job["type"], status=job["status"], created_at=job["created_at"],
        expires_at=clock.iso(job["deadline"]), started_at=job.get("started_at"), finished_at=job.get("finished_at"),
        runtime_id=job.get("runtime_id"), payload=_redacted_payload(job), result=job.get("result"),
        error=job.get("error"), cancel_requested=bool(job.get("cancel_requested")),
    )


def _redacted_payload(job: dict) -> dict:
    """Environment values may be secrets: they go to the worker but are never shown back."""
    payload = dict(job.get("payload", {}))
    if isinstance(payload.get("env"), dict):
        payload["env"] = {name: "***" for name in payload["env"]}
    return payload


# --- creation and reads ---------------------------------------------------------------------------


def create(principal: Principal, request: CreateJobRequest, *, extra: dict | None = None) -> dict:
    """Store the job and, in the same transaction, take a slot on the best runtime that has one;
    then send it there. With no runtime free it waits in `JOBS#waiting` for one."""
    settings = get_settings()
    payload = validate_payload(request.type, request.payload)
    ttl = request.ttl_seconds or settings.default_ttl_seconds
    if request.type == JobType.mcp_run and request.ttl_seconds is None:
        ttl = settings.max_ttl_seconds  # long-lived servers run to the policy's limit
    if ttl > settings.max_ttl_seconds:
        raise Unprocessable(f"ttl_seconds {ttl} exceeds the policy's max_ttl_seconds {settings.max_ttl_seconds}")
    store = get_store()
    if request.type == JobType.tool_run:
        extra = {**(extra or {}), "pinned_runtime_id": _session_runtime(principal, payload["session_id"])}
    now = clock.now()
    job_id = new_id("job")
    job = store.jobs.item(
        principal.workspace_id, job_id, int(now * 1000), type=request.type.value, status=JobStatus.queued.value,
        payload=payload, ttl_seconds=ttl, created_at=clock.iso(now), created_epoch=now, deadline=now + ttl,
        dispatch=0, event_seq=1, created_by=principal.subject_id, **(extra or {}),
    )
    queued_event = store.jobs.event_item(principal.workspace_id, job_id, 1, step="job", status="queued",
                                         message="job accepted", data={}, at=clock.iso(now))
    limit = settings.max_concurrent_jobs
    # The audit record and the usage count commit with the job: no extra round trips, none lost.
    common = [
        store.jobs.event_write(queued_event),
        Write.update(workspace_pk(principal.workspace_id), "WORKSPACE", add={"open_jobs": 1},
                     condition=Condition(below={"open_jobs": limit})),
        audit_write(principal.workspace_id, "job.create", actor=principal.subject_id, target=job_id,
                    detail={"type": request.type.value}),
        meter_write(principal.workspace_id, "jobs", request.type.value),
    ]
    try:
        assigned = dispatch.place(job, lambda assigned: [store.jobs.create_write(assigned), *common])
        if assigned is None:  # no runtime has room: it waits
            store.table.transact([store.jobs.create_write(job), *common])
    except ConditionFailed as error:
        raise TooManyRequests(f"the workspace already has {limit} unfinished jobs (policy max_concurrent_jobs)") \
            from error
    log_audit("job.create", principal.subject_id, job_id)
    return assigned or job


def _session_runtime(principal: Principal, session_id: str) -> str:
    """A tool.run job runs where its session's server runs."""
    session = get_store().jobs.get(principal.workspace_id, session_id)
    if session is None or session["type"] not in (JobType.mcp_test.value, JobType.mcp_run.value):
        raise NotFound(f"no sandbox session {session_id}")
    if session["status"] != JobStatus.running.value or not session.get("runtime_id"):
        raise Conflict(f"sandbox session {session_id} is {session['status']}, not running")
    return session["runtime_id"]


def accepted(job: dict) -> CreateJobResponse:
    return CreateJobResponse(job_id=job["job_id"], status=job["status"], events_url=events_url(job["job_id"]))


def get(principal: Principal, job_id: str) -> dict:
    job = get_store().jobs.get(principal.workspace_id, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(principal: Principal, *, limit: int, cursor: str | None, status: JobStatus | None,
              job_type: JobType | None) -> tuple[list[JobView], str | None]:
    page = get_store().jobs.page(principal.workspace_id, limit=limit, cursor=cursor,
                                 status=status.value if status else None,
                                 job_type=job_type.value if job_type else None)
    return [view(job) for job in page.items], page.cursor


# --- transitions ----------------------------------------------------------------------------------


def _append_event(job: dict, step: str, status: EventStatus, message: str, data: dict | None = None) -> Write:
    seq = get_store().jobs.last_seq(job["workspace_id"], job["job_id"]) + 1
    return get_store().jobs.event_write(get_store().jobs.event_item(
        job["workspace_id"], job["job_id"], seq, step=step, status=status.value, message=message, data=data or {},
        at=clock.iso()))


def _published(workspace_id: str, job_id: str, writes: list[Write]) -> None:
    """Tell this process's event streams about the events among `writes`, which are stored."""
    events = [w.item for w in writes if w.kind == "put" and w.item and w.item["sk"].startswith("EV#")]
    if events:
        event_feed.publish(workspace_id, job_id, events)


def _release_writes(job: dict) -> list[Write]:
    writes = [Write.update(workspace_pk(job["workspace_id"]), "WORKSPACE", add={"open_jobs": -1})]
    if job.get("runtime_id"):
        writes.append(get_store().runtimes.release_write(job["runtime_workspace"], job["runtime_id"]))
    return writes


def finish(job: dict, status: JobStatus, *, from_statuses: list[str], fields: dict | None = None,
           event: Write | None = None, claim_id: str | None = None) -> bool:
    """Move a job to a final status in one transaction; False if it had already left `from_statuses`."""
    now = clock.now()
    # The slot released below is the one held now: the job must still be on that runtime.
    conditions = Condition(in_={"status": from_statuses})
    if claim_id:
        conditions.equals["claim_id"] = claim_id
    if job.get("runtime_id"):
        conditions.equals["runtime_id"] = job["runtime_id"]
    else:
        conditions.missing = ("runtime_id",)
    writes = [get_store().jobs.finish_write(job["workspace_id"], job["job_id"], status,
                                            {"finished_at": clock.iso(now), **(fields or {})}, conditions,
                                            int(now) + RETENTION_SECONDS)]
    writes += _release_writes(job)
    if event is not None:
        writes.append(event)
    try:
        get_store().table.transact(writes)
    except ConditionFailed:
        return False
    get_store().jobs.forget(job["workspace_id"], job["job_id"])
    _published(job["workspace_id"], job["job_id"], writes)
    started = job.get("started_epoch")
    if started:
        meter(job["workspace_id"], "runtime_seconds", job["type"], round(now - started, 3))
    log_event(logger, "job finished", job_id=job["job_id"], status=status.value)
    if job.get("runtime_id"):
        runtime = get_store().runtimes.find(job["runtime_workspace"], job["runtime_id"])
        if runtime is not None:
            dispatch.dispatch_waiting(runtime)  # the slot it freed goes to a job that waited
    return True


def cancel(principal: Principal, job_id: str, *, wait_seconds: float = 3.0) -> CancelResponse:
    job = get(principal, job_id)
    status = JobStatus(job["status"])
    if status in FINAL_JOB_STATUSES:
        return CancelResponse(ok=True, status=status)
    audit(principal.workspace_id, "job.cancel", actor=principal.subject_id, target=job_id)
    if status == JobStatus.queued and not job.get("claim_id"):
        event = _append_event(job, "job", EventStatus.cancelled, "cancelled before it started")
        if finish(job, JobStatus.cancelled, from_statuses=[JobStatus.queued.value], event=event):
            return CancelResponse(ok=True, status=JobStatus.cancelled)
        job = get(principal, job_id)  # it started meanwhile: stop it on its worker instead
    return _cancel_on_worker(job, wait_seconds)


def _cancel_on_worker(job: dict, wait_seconds: float) -> CancelResponse:
    store = get_store()
    try:
        job = store.jobs.update(job["workspace_id"], job["job_id"], set={"cancel_requested": True},
                                condition=Condition(in_={"status": _OPEN}))
    except ConditionFailed:
        job = store.jobs.get(job["workspace_id"], job["job_id"])
        return CancelResponse(ok=True, status=job["status"])
    control.notify(job, "cancel", valid_seconds=CANCEL_DELIVERY_SECONDS)
    deadline = clock.now() + wait_seconds
    while clock.now() < deadline:
        current = store.jobs.get(job["workspace_id"], job["job_id"])
        if current["status"] in {s.value for s in FINAL_JOB_STATUSES}:
            return CancelResponse(ok=True, status=current["status"])
        time.sleep(0.1)
    return CancelResponse(ok=True, status=store.jobs.get(job["workspace_id"], job["job_id"])["status"])


# --- the runtime's side: claims, leases, events ---------------------------------------------------


def runtime_job(runtime: Principal, workspace_id: str, job_id: str) -> dict:
    """A job as a runtime may see it: in its own workspace, or any workspace for a shared runtime."""
    if runtime.workspace_id not in (workspace_id, SHARED_WORKSPACE):
        raise NotFound(f"no job {job_id}")
    job = get_store().jobs.get(workspace_id, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def claim(runtime: Principal, workspace_id: str, job_id: str, request: ClaimRequest) -> ClaimResponse:
    """Grant this delivery the job and record its `start` event, in one transaction.

    A first delivery names the start event's place (`start_seq`, from the message), so the claim
    is one conditional write. Anything else (a redelivery after a lapsed lease, a message from
    before a re-dispatch) reads the job first."""
    if runtime.workspace_id not in (workspace_id, SHARED_WORKSPACE):
        raise NotFound(f"no job {job_id}")
    now = clock.now()
    if request.start_seq:
        first = Condition(equals={"runtime_id": runtime.subject_id, "dispatch": request.dispatch,
                                  "status": JobStatus.queued.value, "event_seq": request.start_seq - 1},
                          missing=("claim_id", "started_at"))
        granted = _grant(runtime, workspace_id, job_id, request, first, request.start_seq, now, first_start=True)
        if granted is not None:
            return granted
    store = get_store()
    job = runtime_job(runtime, workspace_id, job_id)
    status = JobStatus(job["status"])
    if status in FINAL_JOB_STATUSES:
        return ClaimResponse(claimed=False, status=status, reason=f"job is {status.value}")
    if job.get("runtime_id") != runtime.subject_id or job.get("dispatch") != request.dispatch:
        return ClaimResponse(claimed=False, status=status, reason="job was dispatched elsewhere")
    condition = Condition(equals={"runtime_id": runtime.subject_id, "dispatch": request.dispatch},
                          in_={"status": _OPEN})
    if job.get("claim_id"):
        # Re-claim only a lapsed lease: the previous claimant stopped renewing, so it is gone.
        if job.get("lease_until", 0) > now:
            return ClaimResponse(claimed=False, status=status, reason="job is claimed by a live worker")
        condition.equals["claim_id"] = job["claim_id"]
    else:
        condition.missing = ("claim_id",)
    seq = store.jobs.last_seq(workspace_id, job_id) + 1
    granted = _grant(runtime, workspace_id, job_id, request, condition, seq, now,
                     first_start=not job.get("started_at"))
    if granted is not None:
        return granted
    current = store.jobs.get(workspace_id, job_id)
    return ClaimResponse(claimed=False, status=current["status"], reason="claimed concurrently")


def _grant(runtime: Principal, workspace_id: str, job_id: str, request: ClaimRequest, condition: Condition,
           start_seq: int, now: float, *, first_start: bool) -> ClaimResponse | None:
    store = get_store()
    claim_id = new_id("clm")
    changes = {"status": JobStatus.running.value, "claim_id": claim_id, "claimed_by": request.worker_id,
               "lease_until": now + request.lease_seconds}
    if first_start:
        changes.update(started_at=clock.iso(now), started_epoch=now)
    start = store.jobs.event_item(
        workspace_id, job_id, start_seq, step="job", status=EventStatus.start.value,
        message=f"started on runtime {runtime.subject_id}", at=clock.iso(now),
        data={"runtime_id": runtime.subject_id, "attempt": request.attempt, "worker_id": request.worker_id})
    writes = [store.jobs.update_write(workspace_id, job_id, set=changes, add={"claims": 1}, condition=condition),
              store.jobs.event_write(start)]
    try:
        store.table.transact(writes)
    except ConditionFailed:
        return None
    _published(workspace_id, job_id, writes)
    return ClaimResponse(claimed=True, status=JobStatus.running, claim_id=claim_id, next_seq=start_seq + 1)


def renew_lease(runtime: Principal, workspace_id: str, job_id: str, claim_id: str, lease_seconds: int) -> bool:
    """Extend a claim; returns whether cancellation was requested. Conflict when the claim is stale."""
    try:
        job = get_store().jobs.update(
            workspace_id, job_id, set={"lease_until": clock.now() + lease_seconds},
            condition=Condition(equals={"claim_id": claim_id}, in_={"status": _OPEN}))
    except ConditionFailed as error:
        raise Conflict("stale claim: the job is finished or owned by another worker") from error
    runtime_job(runtime, workspace_id, job_id)
    return bool(job.get("cancel_requested"))


def ingest_events(runtime: Principal, workspace_id: str, job_id: str, batch: EventBatch) -> EventBatchResult:
    store = get_store()
    if runtime.workspace_id not in (workspace_id, SHARED_WORKSPACE):
        raise NotFound(f"no job {job_id}")
    if not any(event.step == "job" and event.status in _FINAL_EVENT_STATUS for event in batch.events):
        stored = _store_progress(workspace_id, job_id, batch)
        if stored is not None:
            return stored
    job = runtime_job(runtime, workspace_id, job_id)
    if job.get("claim_id") != batch.claim_id:
        raise Conflict("stale claim: the job is owned by another worker")
    if job["status"] in {s.value for s in FINAL_JOB_STATUSES}:
        # The claimant that finished the job is retrying a batch whose answer it lost.
        return EventBatchResult(accepted=0, duplicates=len(batch.events), job_status=job["status"])
    accepted = duplicates = 0
    final: tuple[JobStatus, dict] | None = None
    for event in batch.events:
        item = _event_item(workspace_id, job_id, event)
        if event.step == "job" and event.status in _FINAL_EVENT_STATUS:
            final = (_FINAL_EVENT_STATUS[event.status], _final_fields(event))
            final_write = store.jobs.event_write(item)
            continue
        try:
            store.table.put(item, must_not_exist=True)
            accepted += 1
            event_feed.publish(workspace_id, job_id, [item])
        except ConditionFailed:
            duplicates += 1
    status = JobStatus(job["status"])
    if final is not None:
        final_status, fields = final
        if finish(job, final_status, from_statuses=_OPEN, fields=fields, event=final_write, claim_id=batch.claim_id):
            accepted += 1
            status = final_status
        else:
            current = store.jobs.get(workspace_id, job_id)
            status = JobStatus(current["status"])
            duplicates += 1
    else:
        store.jobs.update(workspace_id, job_id, set={"last_event_at": clock.iso()},
                          condition=Condition(equals={"claim_id": batch.claim_id}))
    return EventBatchResult(accepted=accepted, duplicates=duplicates, job_status=status,
                            cancel_requested=bool(job.get("cancel_requested")))


def _event_item(workspace_id: str, job_id: str, event) -> dict:
    return get_store().jobs.event_item(workspace_id, job_id, event.seq, step=event.step, status=event.status.value,
                                       message=event.message, data=event.data, at=clock.iso())


def _store_progress(workspace_id: str, job_id: str, batch: EventBatch) -> EventBatchResult | None:
    """The common case in one transaction: new events from the live claimant of a running job
    that nobody asked to cancel. None (nothing written) for anything else, which the careful
    path sorts out."""
    store = get_store()
    writes = [store.jobs.event_write(_event_item(workspace_id, job_id, event)) for event in batch.events]
    writes.append(store.jobs.update_write(
        workspace_id, job_id, set={"last_event_at": clock.iso()},
        condition=Condition(equals={"claim_id": batch.claim_id, "status": JobStatus.running.value},
                            missing=("cancel_requested",))))
    try:
        store.table.transact(writes)
    except ConditionFailed:
        return None
    _published(workspace_id, job_id, writes)
    return EventBatchResult(accepted=len(batch.events), duplicates=0, job_status=JobStatus.running)


def _final_fields(event) -> dict:
    if event.status == EventStatus.complete:
        return {"result": event.data.get("result", event.data)}
    return {"error": event.message or event.status.value}


# --- the sweeper's side ---------------------------------------------------------------------------


def expire(job: dict) -> bool:
    event = _append_event(job, "job", EventStatus.expired, f"job passed its TTL of {job['ttl_seconds']} s")
    if not finish(job, JobStatus.expired, from_statuses=_OPEN, fields={"error": "expired"}, event=event):
        return False
    control.notify(job, "cancel", valid_seconds=CANCEL_DELIVERY_SECONDS, directly=False)
    return True


def requeue(job: dict, reason: str) -> bool:
    """Take a job back from a runtime that went silent so it can be dispatched again."""
    store = get_store()
    event = _append_event(job, "dispatch", EventStatus.queued, reason)
    writes = [
        store.jobs.requeue_write(job["workspace_id"], job["job_id"], job["runtime_id"], _OPEN, event.item["seq"]),
        store.runtimes.release_write(job["runtime_workspace"], job["runtime_id"]),
        event,
    ]
    try:
        store.table.transact(writes)
    except ConditionFailed:
        return False
    _published(job["workspace_id"], job["job_id"], writes)
    requeued = store.jobs.get(job["workspace_id"], job["job_id"])
    dispatch.dispatch(requeued)
    return True


def dead_letter(raw_body: str, receive_count: int) -> bool:
    """A message that kept failing: end its job as `error` with the reason."""
    try:
        message = json.loads(raw_body).get("message", {})
        workspace_id, job_id = message["workspace_id"], message["job_id"]
    except (ValueError, AttributeError, KeyError, TypeError):
        log_event(logger, "dead letter without a job reference dropped", size=len(raw_body))
        return False
    job = get_store().jobs.get(str(workspace_id), str(job_id))
    if job is None or job["status"] in {s.value for s in FINAL_JOB_STATUSES}:
        return False
    reason = f"the job's message failed {receive_count} deliveries and was dead-lettered"
    event = _append_event(job, "job", EventStatus.error, reason)
    return finish(job, JobStatus.error, from_statuses=_OPEN, fields={"error": reason}, event=event)


def opening_events(principal: Principal, job_id: str, after_seq: int) -> list[dict]:
    """An event stream's first read. Every job has its `queued` event, so finding none means
    checking that the job exists in the caller's workspace (NotFound otherwise)."""
    events = get_store().jobs.events_after(principal.workspace_id, job_id, after_seq)
    if not events:
        get(principal, job_id)
    return events


_FINAL_EVENTS = {status.value for status in _FINAL_EVENT_STATUS}


def is_final_event(event: dict) -> bool:
    return event["step"] == "job" and event["status"] in _FINAL_EVENTS


async def stream_events(feed: event_feed.Subscription, after_seq: int, opening: list[dict],
                        window_seconds: float, poll_seconds: float):
    """Yield SSE frames after `after_seq`: first `opening`, then what this process publishes,
    with a table read whenever that leaves a gap or nothing came within `poll_seconds`. Ends
    after the job's final event, or at the window (the client resumes with Last-Event-ID)."""
    workspace_id, job_id = feed.key
    store = get_store()
    deadline = clock.now() + window_seconds
    pending = opening
    try:
        yield "retry: 1000\n\n"
        while True:
            finished = False
            for event in sorted(pending, key=lambda e: e["seq"]):
                if event["seq"] <= after_seq:
                    continue
                if event["seq"] != after_seq + 1:
                    break  # a gap: the table has what is missing
                after_seq = event["seq"]
                finished = finished or is_final_event(event)
                body = {"seq": event["seq"], "step": event["step"], "status": event["status"],
                        "message": event.get("message", ""), "data": event.get("data", {}), "at": event.get("at")}
                yield f"id: {event['seq']}\nevent: {event['status']}\ndata: {json.dumps(body)}\n\n"
            if finished:
                yield "event: end\ndata: {}\n\n"
                return
            if clock.now() >= deadline:
                return
            published = await feed.wait(min(poll_seconds, max(deadline - clock.now(), 0)))
            if published and min(e["seq"] for e in published) <= after_seq + 1:
                pending = published
                continue
            pending = await asyncio.to_thread(store.jobs.events_after, workspace_id, job_id, after_seq)
            if not pending and not published:
                job = await asyncio.to_thread(store.jobs.get, workspace_id, job_id)
                if job is None or job["status"] in {s.value for s in FINAL_JOB_STATUSES}:
                    # Final without a final event in view (e.g. events past retention): drain and end.
                    pending = await asyncio.to_thread(store.jobs.events_after, workspace_id, job_id, after_seq)
                    if not pending:
                        yield "event: end\ndata: {}\n\n"
                        return
    finally:
        feed.close()
