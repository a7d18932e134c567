"""Jobs as their workspace sees them: creation (stored, assigned, audited and metered in one
transaction, then sent), reads, and cancellation."""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import FINAL_JOB_STATUSES, EventStatus, JobStatus, JobType
from app.domain.jobs import JOB_PAYLOAD_MAX_BYTES, JOB_STEP, Job, JobEvent
from app.domain.runtimes import WaitingFor
from app.errors import ConditionFailed, Conflict, NotFound, PayloadTooLarge, TooManyRequests, Unprocessable
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
from app.store.codec import stored_size
from app.store.table import Page, Write

CANCEL_WAIT_SECONDS = 3.0  # how long a cancel of a running job waits for its worker to confirm


def check_payload_size(payload: dict[str, Any], labels: dict[str, str] | None = None) -> None:
    """413 for a payload (with its labels) over JOB_PAYLOAD_MAX_BYTES as stored; 422 for a number
    no store can hold."""
    size = stored_size(payload) + stored_size(labels or {})
    if size > JOB_PAYLOAD_MAX_BYTES:
        raise PayloadTooLarge(f"the job's payload, env and labels take {size} bytes; the limit is "
                              f"{JOB_PAYLOAD_MAX_BYTES} (large inputs belong in a file the job fetches)")


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
               ttl_seconds: int | None = None, *, wait: bool = False, secrets: dict[str, Any] | None = None,
               labels: dict[str, str] | None = None, runtime_labels: dict[str, str] | None = None) -> Job:
        """Store the job and, in the same transaction, take a slot on the best runtime that has one
        (and, with `runtime_labels`, those labels); then send it there. With no runtime free it
        waits for one, and its `queued` event says what for; a type no registered runtime offers is
        refused (Conflict) unless the caller will `wait`. Secret fields (a sandbox's env, an SSH
        client key) are kept sealed beside the payload, never in it, with any `secrets` berth adds
        itself (a provider token)."""
        settings = self.settings
        check_payload_size(payload)  # as sent: validation would turn a NaN into null
        payload = validate_payload(job_type, payload)
        check_payload_size(payload)  # secrets included: they are stored (sealed) with the job
        payload, found = split_secrets(job_type, payload)
        secrets = {**found, **(secrets or {})}
        ttl = ttl_seconds or settings.default_ttl_seconds
        if job_type == JobType.mcp_run and ttl_seconds is None:
            ttl = settings.max_ttl_seconds  # long-lived servers run to the policy's limit
        if ttl > settings.max_ttl_seconds:
            raise Unprocessable(f"ttl_seconds {ttl} exceeds the policy's max_ttl_seconds {settings.max_ttl_seconds}")
        pinned = self._session_runtime(principal, payload["session_id"]) if job_type == JobType.tool_run else None
        return self.submit(principal, job_type, payload, ttl_seconds=ttl, pinned_runtime_id=pinned, secrets=secrets,
                           wait=wait, labels=labels, runtime_labels=runtime_labels)

    def submit(self, principal: Principal, job_type: JobType, payload: dict[str, Any], *, ttl_seconds: int,
               pinned_runtime_id: str | None = None, secrets: dict[str, Any] | None = None,
               with_writes: Callable[[Job], list[Write]] | None = None, wait: bool = False,
               labels: dict[str, str] | None = None, runtime_labels: dict[str, str] | None = None) -> Job:
        """Store a job whose payload and TTL its caller checked, and dispatch it as `create` does.
        `secrets` go to its runtime sealed, never in its payload; `with_writes(job)` gives writes
        that commit in the job's own transaction (a record that must exist exactly when the job
        does)."""
        settings = self.settings
        self.trust.require_verified(principal, "run jobs")
        now = self.clock.now()
        job = Job(job_id=new_id("job"), workspace_id=principal.workspace_id, type=job_type, status=JobStatus.queued,
                  payload=payload, ttl_seconds=ttl_seconds, created_at=self.clock.iso(now), created_epoch=now,
                  deadline=now + ttl_seconds, dispatch=0, event_seq=1, created_by=principal.subject_id,
                  pinned_runtime_id=pinned_runtime_id, labels=labels or None, runtime_labels=runtime_labels or None,
                  secrets=self.job_secrets.seal_at_rest(principal.workspace_id, secrets) if secrets else None,
                  secret_names=secret_names(secrets) if secrets else None)
        limit = settings.max_concurrent_jobs

        def writes(queued: JobEvent) -> list[Write]:
            # The audit record and the usage count commit with the job: no extra round trips, none lost.
            return [self.store.jobs.add_event(job.workspace_id, job.job_id, queued),
                    self.store.accounts.take_job_slot(job.workspace_id, limit),
                    self.activity.audit_write(job.workspace_id, "job.create", actor=principal.subject_id,
                                              target=job.job_id, detail={"type": job_type.value}),
                    self.activity.meter_write(job.workspace_id, "jobs", job_type.value),
                    *(with_writes(job) if with_writes else [])]

        accepted = JobEvent(seq=1, step=JOB_STEP, status=EventStatus.queued, message="job accepted",
                            at=self.clock.iso(now))
        try:
            assigned = self.dispatcher.place(job, lambda assigned: [self.store.jobs.create(assigned),
                                                                    *writes(accepted)])
            if assigned is None:  # no runtime can take it now: it waits, saying what for
                waiting = self._waiting_for(job, refuse=not wait)
                queued = replace(accepted, message=f"waiting: {waiting.message}",
                                 data={"waiting_for": {"capability": waiting.capability, "reason": waiting.reason}})
                self.store.table.transact([self.store.jobs.create(job), *writes(queued)])
        except ConditionFailed as error:
            raise TooManyRequests(f"the workspace already has {limit} unfinished jobs (policy max_concurrent_jobs)") \
                from error
        self.activity.logged("job.create", principal.subject_id, job.job_id)
        return assigned or job

    def _waiting_for(self, job: Job, *, refuse: bool) -> WaitingFor:
        """What a job no runtime took waits for; with `refuse`, Conflict when no registered runtime
        offers its type (judged on a fresh listing, never on a cached one)."""
        waiting = self.dispatcher.waiting_for(job)
        if waiting is not None and waiting.reason == "no_runtime_registered":
            waiting = self.dispatcher.waiting_for(job, fresh=True)
        assert waiting is not None  # a queued job that no runtime has always waits for something
        if refuse and waiting.reason == "no_runtime_registered":
            raise Conflict(f"{waiting.message}; to queue the job anyway, send \"wait\": true")
        return waiting

    def waiting_for(self, job: Job) -> WaitingFor | None:
        """What a queued job waits for (None once a runtime has it)."""
        return self.dispatcher.waiting_for(job)

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
        """Flag the job, ask its worker to stop it, and wait for the job to end. A job no worker can
        stop (its runtime is offline or gone, or its worker answers that it does not run it: a
        ghost of a worker that restarted) ends at once."""
        try:
            job = self.store.jobs.request_cancel(job)
        except ConditionFailed:
            return self._status(job)
        deadline = self.clock.now() + wait_seconds
        if not self._runtime_is_up(job):
            return self._cancel_here(job, "its runtime is offline")
        reply = self.control.cancel(job, valid_seconds=CANCEL_DELIVERY_SECONDS, wait_seconds=wait_seconds)
        if reply is not None and reply.code == "not_running":
            return self._cancel_here(job, "its runtime no longer ran it")
        while self.clock.now() < deadline:
            status = self._status(job)
            if status in FINAL_JOB_STATUSES:
                return status
            self.clock.sleep(0.1)
        return self._status(job)

    def _runtime_is_up(self, job: Job) -> bool:
        """Whether the job's runtime is there to stop it (read fresh: a cached record would look silent)."""
        if not (job.runtime_id and job.runtime_workspace):
            return False
        runtime = self.store.runtimes.get(job.runtime_workspace, job.runtime_id)
        interval = self.settings.heartbeat_interval_seconds
        return runtime is not None and runtime.effective_status(self.clock.now(), interval) != "offline"

    def _cancel_here(self, job: Job, why: str) -> JobStatus:
        """End a running job the API alone must cancel (its claim, if it still holds, is ended with it)."""
        event = self.lifecycle.next_event(job, JOB_STEP, EventStatus.cancelled, f"cancelled: {why}")
        self.lifecycle.finish(job, JobStatus.cancelled, from_statuses=[JobStatus.running], event=event,
                              claim_id=job.claim_id)
        return self._status(job)

    def _status(self, job: Job) -> JobStatus:
        current = self.store.jobs.get(job.workspace_id, job.job_id)
        return current.status if current is not None else job.status
