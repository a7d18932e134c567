"""Choosing a runtime for a job and sending it there.

A job goes to an online runtime of its workspace (preferred) or the shared fleet that
advertises the job's type, can run it there (a sandbox needs the isolation and tool directories
it does: `Runtime.refusal`; a job with secrets needs a runtime key: the message carries them sealed
for that runtime alone) and has a free slot. The slot is reserved and the job assigned in one
transaction (the runtime must still have room, the job must still be waiting); only once that
commits is the message sent. Candidates come from a briefly cached listing first: a stale hint
costs a failed condition and a fresh read, never a wrong assignment.

Jobs that waited go out in turns: a shared runtime that comes online or frees a slot takes the
oldest job of one workspace after another, so one tenant's backlog never starves the others.
"""

from collections.abc import Callable, Collection, Iterator

from app.clock import Clock
from app.contract.messages import JobMessage, JobStatus
from app.domain.jobs import POLICED_JOB_TYPES, Job, in_turns
from app.domain.runtimes import SHARED_WORKSPACE, Runtime, WaitingFor, why_waiting
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
        self._turns_ended_with: str | None = None  # the workspace the last round of turns ended with

    def _pool(self, workspace_id: str, fresh: bool) -> list[Runtime]:
        runtimes = self.store.runtimes
        own = runtimes.listed(workspace_id, fresh=fresh) if workspace_id != SHARED_WORKSPACE else []
        return own + runtimes.listed(SHARED_WORKSPACE, fresh=fresh)

    def _ranked(self, pool: list[Runtime], job: Job) -> list[Runtime]:
        now, interval = self.clock.now(), self.settings.heartbeat_interval_seconds
        network = self.settings.sandbox_network
        return sorted((r for r in pool if r.can_serve(job, now, interval, sandbox_network=network)),
                      key=lambda r: (r.workspace_id != job.workspace_id, r.occupancy()))

    def candidates(self, job: Job, *, refresh: bool = True, exclude: Collection[str] = ()) -> Iterator[Runtime]:
        """Runtimes to try, best first (own before shared, emptier first), but those in `exclude`:
        from the cached listing, then (if `refresh`) from a fresh read."""
        tried: set[str] = set(exclude)
        for fresh in (False, True) if refresh else (False,):
            for runtime in self._ranked(self._pool(job.workspace_id, fresh), job):
                if runtime.runtime_id not in tried:
                    tried.add(runtime.runtime_id)
                    yield runtime

    def waiting_for(self, job: Job, *, fresh: bool = False) -> WaitingFor | None:
        """Why a waiting job waits (None once a runtime has it), from the cached listing unless `fresh`."""
        if job.status != JobStatus.queued or job.runtime_id:
            return None
        return why_waiting(job, self._pool(job.workspace_id, fresh), self.clock.now(),
                           self.settings.heartbeat_interval_seconds)

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

    def place(self, job: Job, job_writes: Callable[[Job], list[Write]], *, refresh: bool = True,
              exclude: Collection[str] = ()) -> Job | None:
        """Put `job` on the best runtime with room (not one in `exclude`): one transaction of
        `job_writes(assigned job)` and the runtime's slot, then the message. The assigned job, or
        None when no runtime can take it now. A runtime that filled up meanwhile means trying the
        next; any other failed condition (among `job_writes`) is raised for the caller to judge."""
        for runtime in self.candidates(job, refresh=refresh, exclude=exclude):
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

    def dispatch(self, job: Job, *, refresh: bool = True, exclude: Collection[str] = ()) -> bool:
        """Assign a waiting job to the best runtime (not one in `exclude`) and send it; False when
        none can take it now."""
        try:
            return self.place(job, lambda assigned: [self.store.jobs.assign(assigned)], refresh=refresh,
                              exclude=exclude) is not None
        except ConditionFailed:
            return False  # cancelled or dispatched by someone else meanwhile

    def resend(self, job: Job) -> None:
        """Send an assigned job's message again (the first was lost); claims fence duplicates."""
        if job.runtime_id and job.runtime_workspace:
            runtime = self.store.runtimes.find(job.runtime_workspace, job.runtime_id)
            if runtime is not None:
                self._send(job, runtime)

    def dispatch_waiting(self, runtime: Runtime, limit: int = 100) -> int:
        """When a runtime comes online or frees a slot: hand it (or a better runtime) jobs that waited
        for one. A workspace's runtime reads its workspace's, oldest first; a shared runtime takes
        them in turns (`_in_turns`). At most `limit` jobs are tried."""
        if runtime.workspace_id == SHARED_WORKSPACE:
            waiting = self._in_turns(runtime, limit)
        else:
            waiting = [job for job in self.store.jobs.waiting_in(runtime.workspace_id, limit) if runtime.runs(job)]
        if not waiting:
            return 0
        self.store.runtimes.listed(runtime.workspace_id, fresh=True)  # one fresh read serves the whole batch
        return sum(self.dispatch(job, refresh=False) for job in waiting)

    def _in_turns(self, runtime: Runtime, limit: int) -> list[Job]:
        """Waiting jobs this runtime can run, one workspace's oldest after another's: the first
        turn gives each workspace its oldest, the second its next, and so on. Workspaces are read
        (one query each) from the one after where the previous round ended, until there is one
        for each free slot; so with few slots, each round serves the next workspaces in line."""
        free = max(runtime.max_concurrent_jobs - runtime.active_jobs, 1)
        network = self.settings.sandbox_network
        runnable: list[Job] = []
        workspaces = 0
        for workspace_id, jobs in self.store.jobs.waiting_by_workspace(
                after_workspace=self._turns_ended_with, workspaces=limit, per_workspace=min(free, limit)):
            self._turns_ended_with = workspace_id
            theirs = [job for job in jobs
                      if runtime.runs(job) and runtime.refusal(job, sandbox_network=network) is None]
            runnable += theirs
            workspaces += bool(theirs)
            if workspaces >= free:
                break
        return in_turns(runnable)[:limit]
