"""The transitions the API makes itself: finishing a job, taking it back from a runtime that went
silent, left, let it go or lost it, expiring it, and ending it when its message was dead-lettered.

Every transition is one conditional transaction that names the statuses it may leave, so nothing
ever leaves a final state; finishing also releases the workspace's and the runtime's slot in the
same transaction, so counts cannot drift, and hands the freed slot to a job that waited for one.
A job type may add writes of its own to that transaction (`Closing`: infra SSH audits each run
and forward as it ends), so whatever records an ending cannot miss one or count one twice.
"""

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

from app.clock import Clock
from app.contract.logs import log
from app.contract.messages import EventStatus, JobStatus, JobType
from app.domain.jobs import JOB_STEP, OPEN_JOB_STATUSES, RETENTION_SECONDS, Job, JobEvent
from app.domain.models import MODEL_JOB_TYPES, ending_of
from app.errors import ConditionFailed
from app.logs import get_logger, log_event
from app.services.activity import ActivityLog
from app.services.control import ControlChannel
from app.services.dispatch import Dispatcher
from app.services.event_feed import EventFeed
from app.store import Store
from app.store.table import Write

logger = get_logger("berth.jobs")

CANCEL_DELIVERY_SECONDS = 60  # how long a cancel may wait for its worker to read it


def each_job(jobs: Iterable[Job], act: Callable[[Job], bool], doing: str) -> int:
    """`act` on each job, counting those it changed; a job it fails on is logged and the others go
    on, so one bad record never stops a sweep (or a runtime's leaving) for the rest."""
    changed = 0
    for job in jobs:
        try:
            changed += bool(act(job))
        except Exception:
            log(logger, logging.ERROR, f"{doing} failed for a job; going on with the others", exc_info=True,
                job_id=job.job_id, workspace_id=job.workspace_id)
    return changed


class Closing(Protocol):
    def closing_writes(self, job: Job, status: JobStatus, result: Any, error: str | None) -> list[Write]:
        """Writes that commit with `job`'s final transition to `status` (and only if it commits)."""
        ...


class JobLifecycle:
    def __init__(self, store: Store, dispatcher: Dispatcher, control: ControlChannel, feed: EventFeed,
                 activity: ActivityLog, clock: Clock, closing: Mapping[JobType, Callable[[], Closing]] | None = None):
        self.store = store
        self.dispatcher = dispatcher
        self.control = control
        self.feed = feed
        self.activity = activity
        self.clock = clock
        self.closing = dict(closing or {})  # built on first use: most processes never end such a job

    def next_event(self, job: Job, step: str, status: EventStatus, message: str,
                   data: dict[str, Any] | None = None) -> JobEvent:
        """An event the API adds to a job, numbered after the job's last."""
        seq = self.store.jobs.last_seq(job.workspace_id, job.job_id) + 1
        return JobEvent(seq=seq, step=step, status=status, message=message, data=data or {}, at=self.clock.iso())

    def finish(self, job: Job, status: JobStatus, *, from_statuses: Collection[JobStatus] = OPEN_JOB_STATUSES,
               result: Any = None, error: str | None = None, event: JobEvent | None = None,
               claim_id: str | None = None) -> bool:
        """Move a job to a final status in one transaction (with `event`, if given); False if it had
        already left `from_statuses` (or, with `claim_id`, another claim holds it)."""
        now = self.clock.now()
        writes = [self.store.jobs.finish(job, status, from_statuses=from_statuses, finished_at=self.clock.iso(now),
                                         retain_until=int(now) + RETENTION_SECONDS, result=result, error=error,
                                         claim_id=claim_id),
                  self.store.accounts.release_job_slot(job.workspace_id)]
        # The slot released is the one held now: the job must still be on that runtime (a condition of the finish).
        if job.runtime_id and job.runtime_workspace:
            writes.append(self.store.runtimes.release_slot(job.runtime_workspace, job.runtime_id))
        if event is not None:
            writes.append(self.store.jobs.add_event(job.workspace_id, job.job_id, event))
        if (closing := self.closing.get(job.type)) is not None:
            writes += closing().closing_writes(job, status, result, error)
        try:
            self.store.table.transact(writes)
        except ConditionFailed:
            return False
        self.store.jobs.forget(job.workspace_id, job.job_id)
        if event is not None:
            self.feed.publish(job.workspace_id, job.job_id, [event])
        if job.started_epoch:
            self.activity.meter(job.workspace_id, "runtime_seconds", job.type.value, round(now - job.started_epoch, 3))
        log_event(logger, "job finished", job_id=job.job_id, status=status.value)
        self._end_installation(job, status, error)
        if job.runtime_id and job.runtime_workspace:
            self._hand_over_slot(job.runtime_workspace, job.runtime_id)
        return True

    def _hand_over_slot(self, runtime_workspace: str, runtime_id: str) -> None:
        """The slot a finished job freed goes to a job that waited. Best effort: the job's end is
        committed, and whatever fails here the sweeper's next dispatch makes up for."""
        try:
            runtime = self.store.runtimes.find(runtime_workspace, runtime_id)
            if runtime is not None:
                self.dispatcher.dispatch_waiting(runtime)
        except Exception:
            log(logger, logging.ERROR, "handing a freed slot to a waiting job failed; the sweeper will",
                exc_info=True, runtime_id=runtime_id)

    def _end_installation(self, job: Job, status: JobStatus, error: str | None) -> None:
        """A model job's installation ends with its job, unless its worker already said how."""
        installation_id = job.payload.get("installation_id") if job.type in MODEL_JOB_TYPES else None
        ending = ending_of(status, error, job.type) if installation_id else None
        if installation_id and ending is not None:
            self.store.models.record_job_end(job.workspace_id, str(installation_id), job.job_id, *ending,
                                             now=self.clock.iso())

    def expire(self, job: Job) -> bool:
        event = self.next_event(job, JOB_STEP, EventStatus.expired, f"job passed its TTL of {job.ttl_seconds} s")
        if not self.finish(job, JobStatus.expired, error="expired", event=event):
            return False
        # The sweeper runs outside the fleet's network: the queue, not the direct channel.
        self.control.notify(job, "cancel", valid_seconds=CANCEL_DELIVERY_SECONDS, directly=False)
        return True

    def requeue(self, job: Job, reason: str, *, claim_id: str | None = None, elsewhere: bool = False) -> bool:
        """Take a job back from its runtime so it can be dispatched again: only while it is still
        there (and, with `claim_id`, under that claim). `elsewhere`: not back to the same runtime."""
        if not (job.runtime_id and job.runtime_workspace):
            return False
        event = self.next_event(job, "dispatch", EventStatus.queued, reason)
        writes = [self.store.jobs.requeue(job, event.seq, claim_id=claim_id),
                  self.store.runtimes.release_slot(job.runtime_workspace, job.runtime_id),
                  self.store.jobs.add_event(job.workspace_id, job.job_id, event)]
        try:
            self.store.table.transact(writes)
        except ConditionFailed:
            return False
        self.feed.publish(job.workspace_id, job.job_id, [event])
        self.store.jobs.forget(job.workspace_id, job.job_id)
        requeued = self.store.jobs.get(job.workspace_id, job.job_id)
        if requeued is not None:
            self.dispatcher.dispatch(requeued, exclude=[job.runtime_id] if elsewhere else ())
        return True

    def take_back(self, job: Job, reason: str) -> bool:
        """A job whose runtime is gone: expired if past its deadline, else back to waiting."""
        if job.deadline <= self.clock.now():
            return self.expire(job)
        return self.requeue(job, reason)

    def fail(self, job: Job, reason: str, *, claim_id: str | None = None) -> bool:
        """End an unfinished job as `error` with a reason the user can act on."""
        event = self.next_event(job, JOB_STEP, EventStatus.error, reason)
        return self.finish(job, JobStatus.error, error=reason, event=event, claim_id=claim_id)

    def dead_letter(self, raw_body: str, receive_count: int) -> bool:
        """A message that kept failing: end its job as `error` with the reason, unless the job was
        dispatched again since (a later message of it may be doing fine)."""
        try:
            message = json.loads(raw_body).get("message", {})
            workspace_id, job_id = str(message["workspace_id"]), str(message["job_id"])
            dispatch = int(message.get("dispatch", 1))  # JobMessage's default
        except (ValueError, AttributeError, KeyError, TypeError):
            log_event(logger, "dead letter without a job reference dropped", size=len(raw_body))
            return False
        try:
            job = self.store.jobs.get(workspace_id, job_id)
        except (KeyError, TypeError, ValueError) as error:  # a record this code cannot read: retrying won't help
            log_event(logger, "dead letter of an unreadable job dropped", job_id=job_id,
                      error=f"{type(error).__name__}: {error}")
            return False
        if job is None or job.is_final:
            return False
        if dispatch < job.dispatch:
            log_event(logger, "dead letter of an earlier dispatch ignored", job_id=job_id, letter_dispatch=dispatch,
                      dispatch=job.dispatch)
            return False
        return self.fail(job, f"the job's message failed {receive_count} deliveries and was dead-lettered")
