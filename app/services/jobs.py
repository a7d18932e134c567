"""Jobs as their workspace sees them: creation (stored, assigned, audited and metered in one
transaction, then sent), reads, and cancellation."""

from typing import Any

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import FINAL_JOB_STATUSES, EventStatus, JobStatus, JobType
from app.domain.jobs import JOB_STEP, Job, JobEvent
from app.errors import ConditionFailed, Conflict, NotFound, TooManyRequests, Unprocessable
from app.ids import new_id
from app.schemas.jobs import secret_names, split_secrets, validate_payload
from app.services.activity import ActivityLog
from app.services.control import ControlChannel
from app.services.dispatch import Dispatcher
from app.services.keyring import JobSecrets
from app.services.lifecycle import CANCEL_DELIVERY_SECONDS, JobLifecycle
from app.services.trust import TrustPolicy
from app.settings import Settings
from app.store import Store
from app.store.table import Page

CANCEL_WAIT_SECONDS = 3.0  # how long a cancel of a running job waits for its worker to confirm


class JobService:
    def __init__(self, store: Store, settings: Settings, trust: TrustPolicy, job_secrets: JobSecrets,
                 dispatcher: Dispatcher, lifecycle: JobLifecycle, control: ControlChannel, activity: ActivityLog,
                 clock: Clock):
        self.store = store
        self.settings = settings
        self.trust = trust
        self.job_secrets = job_secrets
        self.dispatcher = dispatcher
        self.lifecycle = lifecycle
        self.control = control
        self.activity = activity
        self.clock = clock

    def create(self, principal: Principal, job_type: JobType, payload: dict[str, Any],
               ttl_seconds: int | None = None, *, labels: dict[str, str] | None = None,
               runtime_labels: dict[str, str] | None = None) -> Job:
        """Store the job and, in the same transaction, take a slot on the best runtime that has one
        (and, with `runtime_labels`, those labels); then send it there. With no runtime free it
        waits for one. Secret fields (a sandbox's env, an SSH client key) are kept sealed beside
        the payload, never in it."""
        settings = self.settings
        self.trust.require_verified(principal, "run jobs")
        payload, secrets = split_secrets(job_type, validate_payload(job_type, payload))
        ttl = ttl_seconds or settings.default_ttl_seconds
        if job_type == JobType.mcp_run and ttl_seconds is None:
            ttl = settings.max_ttl_seconds  # long-lived servers run to the policy's limit
        if ttl > settings.max_ttl_seconds:
            raise Unprocessable(f"ttl_seconds {ttl} exceeds the policy's max_ttl_seconds {settings.max_ttl_seconds}")
        pinned = self._session_runtime(principal, payload["session_id"]) if job_type == JobType.tool_run else None
        now = self.clock.now()
        job = Job(job_id=new_id("job"), workspace_id=principal.workspace_id, type=job_type, status=JobStatus.queued,
                  payload=payload, ttl_seconds=ttl, created_at=self.clock.iso(now), created_epoch=now,
                  deadline=now + ttl, dispatch=0, event_seq=1, created_by=principal.subject_id,
                  pinned_runtime_id=pinned, labels=labels or None, runtime_labels=runtime_labels or None,
                  secrets=self.job_secrets.seal_at_rest(principal.workspace_id, secrets) if secrets else None,
                  secret_names=secret_names(secrets) if secrets else None)
        queued = JobEvent(seq=1, step=JOB_STEP, status=EventStatus.queued, message="job accepted",
                          at=self.clock.iso(now))
        limit = settings.max_concurrent_jobs
        # The audit record and the usage count commit with the job: no extra round trips, none lost.
        common = [
            self.store.jobs.add_event(job.workspace_id, job.job_id, queued),
            self.store.accounts.take_job_slot(job.workspace_id, limit),
            self.activity.audit_write(job.workspace_id, "job.create", actor=principal.subject_id, target=job.job_id,
                                      detail={"type": job_type.value}),
            self.activity.meter_write(job.workspace_id, "jobs", job_type.value),
        ]
        try:
            assigned = self.dispatcher.place(job, lambda assigned: [self.store.jobs.create(assigned), *common])
            if assigned is None:  # no runtime has room: it waits
                self.store.table.transact([self.store.jobs.create(job), *common])
        except ConditionFailed as error:
            raise TooManyRequests(f"the workspace already has {limit} unfinished jobs (policy max_concurrent_jobs)") \
                from error
        self.activity.logged("job.create", principal.subject_id, job.job_id)
        return assigned or job

    def _session_runtime(self, principal: Principal, session_id: str) -> str:
        """A tool.run job runs where its session's server runs."""
        session = self.store.jobs.get(principal.workspace_id, session_id)
        if session is None or not session.is_sandbox:
            raise NotFound(f"no sandbox session {session_id}")
        if session.status != JobStatus.running or not session.runtime_id:
            raise Conflict(f"sandbox session {session_id} is {session.status.value}, not running")
        return session.runtime_id

    def get(self, principal: Principal, job_id: str) -> Job:
        job = self.store.jobs.get(principal.workspace_id, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def page(self, principal: Principal, *, limit: int, cursor: str | None, status: JobStatus | None = None,
             job_type: JobType | None = None) -> Page[Job]:
        """Newest first."""
        return self.store.jobs.page(principal.workspace_id, limit=limit, cursor=cursor, status=status,
                                    job_type=job_type)

    def cancel(self, principal: Principal, job_id: str, *, wait_seconds: float = CANCEL_WAIT_SECONDS) -> JobStatus:
        """A queued job is cancelled at once; a running one is stopped by its worker, which confirms
        (waiting at most `wait_seconds`). The job's status after."""
        job = self.get(principal, job_id)
        if job.is_final:
            return job.status
        self.activity.audit(principal.workspace_id, "job.cancel", actor=principal.subject_id, target=job_id)
        if job.cancels_without_its_worker:
            event = self.lifecycle.next_event(job, JOB_STEP, EventStatus.cancelled, "cancelled before it started")
            if self.lifecycle.finish(job, JobStatus.cancelled, from_statuses=[JobStatus.queued], event=event):
                return JobStatus.cancelled
            job = self.get(principal, job_id)  # it started meanwhile: stop it on its worker instead
        return self._cancel_on_worker(job, wait_seconds)

    def _cancel_on_worker(self, job: Job, wait_seconds: float) -> JobStatus:
        try:
            job = self.store.jobs.request_cancel(job)
        except ConditionFailed:
            return self._status(job)
        self.control.notify(job, "cancel", valid_seconds=CANCEL_DELIVERY_SECONDS)
        deadline = self.clock.now() + wait_seconds
        while self.clock.now() < deadline:
            status = self._status(job)
            if status in FINAL_JOB_STATUSES:
                return status
            self.clock.sleep(0.1)
        return self._status(job)

    def _status(self, job: Job) -> JobStatus:
        current = self.store.jobs.get(job.workspace_id, job.job_id)
        return current.status if current is not None else job.status
