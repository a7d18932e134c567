"""The transitions the API makes itself: finishing a job, taking it back from a silent runtime,
expiring it, and ending it when its message was dead-lettered.

Every transition is one conditional transaction that names the statuses it may leave, so nothing
ever leaves a final state; finishing also releases the workspace's and the runtime's slot in the
same transaction, so counts cannot drift, and hands the freed slot to a job that waited for one.
A job type may add writes of its own to that transaction (`Closing`: infra SSH audits each run
and forward as it ends), so whatever records an ending cannot miss one or count one twice.
"""

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from app.clock import Clock
from app.contract.messages import EventStatus, JobStatus, JobType
from app.domain.jobs import JOB_STEP, OPEN_JOB_STATUSES, RETENTION_SECONDS, Job, JobEvent
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
        if job.runtime_id and job.runtime_workspace:
            runtime = self.store.runtimes.find(job.runtime_workspace, job.runtime_id)
            if runtime is not None:
                self.dispatcher.dispatch_waiting(runtime)  # the slot it freed goes to a job that waited
        return True

    def expire(self, job: Job) -> bool:
        event = self.next_event(job, JOB_STEP, EventStatus.expired, f"job passed its TTL of {job.ttl_seconds} s")
        if not self.finish(job, JobStatus.expired, error="expired", event=event):
            return False
        # The sweeper runs outside the fleet's network: the queue, not the direct channel.
        self.control.notify(job, "cancel", valid_seconds=CANCEL_DELIVERY_SECONDS, directly=False)
        return True

    def requeue(self, job: Job, reason: str) -> bool:
        """Take a job back from a runtime that went silent so it can be dispatched again."""
        if not (job.runtime_id and job.runtime_workspace):
            return False
        event = self.next_event(job, "dispatch", EventStatus.queued, reason)
        writes = [self.store.jobs.requeue(job, event.seq),
                  self.store.runtimes.release_slot(job.runtime_workspace, job.runtime_id),
                  self.store.jobs.add_event(job.workspace_id, job.job_id, event)]
        try:
            self.store.table.transact(writes)
        except ConditionFailed:
            return False
        self.feed.publish(job.workspace_id, job.job_id, [event])
        requeued = self.store.jobs.get(job.workspace_id, job.job_id)
        if requeued is not None:
            self.dispatcher.dispatch(requeued)
        return True

    def dead_letter(self, raw_body: str, receive_count: int) -> bool:
        """A message that kept failing: end its job as `error` with the reason."""
        try:
            message = json.loads(raw_body).get("message", {})
            workspace_id, job_id = message["workspace_id"], message["job_id"]
        except (ValueError, AttributeError, KeyError, TypeError):
            log_event(logger, "dead letter without a job reference dropped", size=len(raw_body))
            return False
        job = self.store.jobs.get(str(workspace_id), str(job_id))
        if job is None or job.is_final:
            return False
        reason = f"the job's message failed {receive_count} deliveries and was dead-lettered"
        event = self.next_event(job, JOB_STEP, EventStatus.error, reason)
        return self.finish(job, JobStatus.error, error=reason, event=event)
