"""Choosing a runtime for a job and sending it there.

A job goes to an online runtime of its workspace (preferred) or the shared fleet that
advertises the job's type and has a free slot (and, for a job with secrets, a runtime key: the
message carries them sealed for that runtime alone). The slot is reserved and the job assigned in one
transaction (the runtime must still have room, the job must still be waiting); only once that
commits is the message sent. Candidates come from a briefly cached listing first: a stale hint
costs a failed condition and a fresh read, never a wrong assignment.
"""

from collections.abc import Callable, Iterator

from app.clock import Clock
from app.contract.messages import JobMessage
from app.domain.jobs import POLICED_JOB_TYPES, Job
from app.domain.runtimes import SHARED_WORKSPACE, Runtime
from app.errors import ConditionFailed
from app.logs import get_logger, log_event
from app.queues import Queues
from app.services.keyring import JobSecrets
from app.services.policy import sandbox_policy
from app.settings import Settings
from app.store import Store
from app.store.table import Write

logger = get_logger("berth.dispatch")


class Dispatcher:
    def __init__(self, store: Store, queues: Queues, job_secrets: JobSecrets, settings: Settings, clock: Clock):
        self.store = store
        self.queues = queues
        self.job_secrets = job_secrets
        self.settings = settings
        self.clock = clock

    def _pool(self, workspace_id: str, fresh: bool) -> list[Runtime]:
        runtimes = self.store.runtimes
        own = runtimes.listed(workspace_id, fresh=fresh) if workspace_id != SHARED_WORKSPACE else []
        return own + runtimes.listed(SHARED_WORKSPACE, fresh=fresh)

    def _ranked(self, pool: list[Runtime], job: Job) -> list[Runtime]:
        now, interval = self.clock.now(), self.settings.heartbeat_interval_seconds
        return sorted((r for r in pool if r.can_serve(job, now, interval)),
                      key=lambda r: (r.workspace_id != job.workspace_id, r.occupancy()))

    def candidates(self, job: Job, *, refresh: bool = True) -> Iterator[Runtime]:
        """Runtimes to try, best first (own before shared, emptier first): from the cached listing,
        then (if `refresh`) from a fresh read."""
        tried: set[str] = set()
        for fresh in (False, True) if refresh else (False,):
            for runtime in self._ranked(self._pool(job.workspace_id, fresh), job):
                if runtime.runtime_id not in tried:
                    tried.add(runtime.runtime_id)
                    yield runtime

    def message(self, job: Job, runtime: Runtime) -> JobMessage:
        """The job's message for `runtime`: its secrets sealed for that runtime alone."""
        policy = sandbox_policy(self.settings, job.ttl_seconds) if job.type in POLICED_JOB_TYPES else None
        return JobMessage(job_id=job.job_id, workspace_id=job.workspace_id, type=job.type, payload=job.payload,
                          expires_at=job.deadline, dispatch=job.dispatch, policy=policy,
                          start_seq=job.event_seq + 1 if job.event_seq else 0,
                          secrets=self.job_secrets.for_runtime(job, runtime))

    def _send(self, job: Job, runtime: Runtime) -> None:
        self.queues.send(runtime.jobs_queue_url, self.message(job, runtime))
        log_event(logger, "job dispatched", job_id=job.job_id, runtime_id=runtime.runtime_id, dispatch=job.dispatch)

    def place(self, job: Job, job_writes: Callable[[Job], list[Write]], *, refresh: bool = True) -> Job | None:
        """Put `job` on the best runtime with room: one transaction of `job_writes(assigned job)` and
        the runtime's slot, then the message. The assigned job, or None when no runtime can take it
        now. A runtime that filled up meanwhile means trying the next; any other failed condition
        (among `job_writes`) is raised for the caller to judge."""
        for runtime in self.candidates(job, refresh=refresh):
            assigned = job.assigned_to(runtime.runtime_id, runtime.workspace_id, self.clock.now())
            writes = [*job_writes(assigned), self.store.runtimes.take_slot(runtime)]
            try:
                self.store.table.transact(writes)
            except ConditionFailed as error:
                if set(error.failed) - {len(writes) - 1}:
                    raise
                continue
            self._send(assigned, runtime)
            return assigned
        return None

    def dispatch(self, job: Job, *, refresh: bool = True) -> bool:
        """Assign a waiting job to the best runtime and send it; False when none can take it now."""
        try:
            return self.place(job, lambda assigned: [self.store.jobs.assign(assigned)], refresh=refresh) is not None
        except ConditionFailed:
            return False  # cancelled or dispatched by someone else meanwhile

    def resend(self, job: Job) -> None:
        """Send an assigned job's message again (the first was lost); claims fence duplicates."""
        if job.runtime_id and job.runtime_workspace:
            runtime = self.store.runtimes.find(job.runtime_workspace, job.runtime_id)
            if runtime is not None:
                self._send(job, runtime)

    def dispatch_waiting(self, runtime: Runtime, limit: int = 100) -> int:
        """When a runtime comes online or frees a slot: hand it (or a better runtime) the jobs that
        waited for one, oldest first."""
        waiting = [job for job in self.store.jobs.waiting(limit=limit) if runtime.runs(job)]
        if not waiting:
            return 0
        self.store.runtimes.listed(runtime.workspace_id, fresh=True)  # one fresh read serves the whole batch
        return sum(self.dispatch(job, refresh=False) for job in waiting)
