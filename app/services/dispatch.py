"""Choosing a runtime for a job and sending it there.

A job goes to an online runtime of its workspace (preferred) or the shared fleet that
advertises the job's type and has a free slot. The slot is reserved and the job assigned in one
transaction (the runtime must still have room, the job must still be waiting); only once that
commits is the message sent. Candidates come from a briefly cached listing first: a stale hint
costs a failed condition and a fresh read, never a wrong assignment.
"""

from collections.abc import Callable, Iterator

from app import clock, queues
from app.errors import ConditionFailed
from app.logs import get_logger, log_event
from app.contract.messages import JobMessage, JobStatus, JobType
from app.services import runtimes, system
from app.store import get_store
from app.store.jobs import ASSIGNED, WAITING
from app.store.runtimes import SHARED_WORKSPACE
from app.store.table import Condition, Write

logger = get_logger("berth.dispatch")

SANDBOX_JOB_TYPES = (JobType.mcp_test.value, JobType.mcp_run.value, JobType.tool_run.value)


def _can_serve(runtime: dict, job: dict, now: float) -> bool:
    return (
        runtimes.effective_status(runtime, now) == "online"
        and job["type"] in runtime.get("capabilities", [])
        and runtime.get("active_jobs", 0) < runtime.get("max_concurrent_jobs", 0)
        and (runtime["workspace_id"] in (job["workspace_id"], SHARED_WORKSPACE))
        and job.get("pinned_runtime_id") in (None, runtime["runtime_id"])
    )


def _ranked(pool: list[dict], job: dict) -> list[dict]:
    now = clock.now()
    own_first = lambda r: (r["workspace_id"] != job["workspace_id"],  # noqa: E731
                           r.get("active_jobs", 0) / max(r.get("max_concurrent_jobs", 1), 1))
    return sorted((r for r in pool if _can_serve(r, job, now)), key=own_first)


def _pool(workspace_id: str, fresh: bool) -> list[dict]:
    store = get_store()
    own = store.runtimes.listed(workspace_id, fresh=fresh) if workspace_id != SHARED_WORKSPACE else []
    return own + store.runtimes.listed(SHARED_WORKSPACE, fresh=fresh)


def candidates(job: dict, *, refresh: bool = True) -> Iterator[dict]:
    """Runtimes to try, best first: from the cached listing, then (if `refresh`) from a fresh read."""
    tried: set[str] = set()
    for fresh in (False, True) if refresh else (False,):
        for runtime in _ranked(_pool(job["workspace_id"], fresh), job):
            if runtime["runtime_id"] not in tried:
                tried.add(runtime["runtime_id"])
                yield runtime


ASSIGNMENT_FIELDS = ("runtime_id", "runtime_workspace", "dispatched_at", "open_pk")


def assignment(runtime: dict, now: float) -> dict:
    """The job fields (ASSIGNMENT_FIELDS) that put it on `runtime`."""
    return {"runtime_id": runtime["runtime_id"], "runtime_workspace": runtime["workspace_id"],
            "dispatched_at": now, "open_pk": ASSIGNED}


def slot_write(runtime: dict) -> Write:
    """Take one of the runtime's job slots; the transaction fails when it is full."""
    return get_store().runtimes.slot_write(runtime["workspace_id"], runtime["runtime_id"],
                                           runtime["max_concurrent_jobs"])


def job_message(job: dict) -> JobMessage:
    policy = system.sandbox_policy(job["ttl_seconds"]) if job["type"] in SANDBOX_JOB_TYPES else None
    start_seq = job["event_seq"] + 1 if job.get("event_seq") else 0
    return JobMessage(job_id=job["job_id"], workspace_id=job["workspace_id"], type=JobType(job["type"]),
                      payload=job.get("payload", {}), expires_at=job["deadline"], dispatch=job.get("dispatch", 1),
                      policy=policy, start_seq=start_seq)


def send(job: dict, runtime: dict) -> None:
    queues.send(runtime["jobs_queue_url"], job_message(job))
    log_event(logger, "job dispatched", job_id=job["job_id"], runtime_id=runtime["runtime_id"],
              dispatch=job.get("dispatch", 1))


def place(job: dict, job_writes: Callable[[dict], list[Write]], *, refresh: bool = True) -> dict | None:
    """Put `job` on the best runtime with room: one transaction of `job_writes(assigned job)` and
    the runtime's slot, then the message. The assigned job, or None when no runtime can take it
    now. A runtime that filled up meanwhile means trying the next; any other failed condition
    (among `job_writes`) is raised for the caller to judge."""
    store = get_store()
    for runtime in candidates(job, refresh=refresh):
        assigned = {**job, **assignment(runtime, clock.now()), "dispatch": job.get("dispatch", 0) + 1}
        writes = [*job_writes(assigned), slot_write(runtime)]
        try:
            store.table.transact(writes)
        except ConditionFailed as error:
            if set(error.failed) - {len(writes) - 1}:
                raise
            continue
        send(assigned, runtime)
        return assigned
    return None


def dispatch(job: dict, *, refresh: bool = True) -> bool:
    """Assign a waiting job to the best runtime and send it; False when none can take it now."""
    store = get_store()

    def assign(assigned: dict) -> list[Write]:
        fields = {name: assigned[name] for name in ASSIGNMENT_FIELDS}
        return [store.jobs.update_write(
            job["workspace_id"], job["job_id"], set=fields, add={"dispatch": 1},
            condition=Condition(equals={"status": JobStatus.queued.value, "open_pk": WAITING}))]

    try:
        return place(job, assign, refresh=refresh) is not None
    except ConditionFailed:
        return False  # cancelled or dispatched by someone else meanwhile


def resend(job: dict) -> None:
    """Send an assigned job's message again (the first was lost); claims fence duplicates."""
    runtime = get_store().runtimes.find(job["runtime_workspace"], job["runtime_id"])
    if runtime is not None:
        send(job, runtime)


def dispatch_waiting(runtime: dict, limit: int = 100) -> int:
    """When a runtime comes online or frees a slot: hand it (or a better runtime) the jobs that
    waited for one, oldest first."""
    store = get_store()
    waiting = [job for job in store.jobs.open_jobs(WAITING, limit=limit)
               if runtime["workspace_id"] in (job["workspace_id"], SHARED_WORKSPACE)
               and job["type"] in runtime.get("capabilities", [])]
    if not waiting:
        return 0
    store.runtimes.listed(runtime["workspace_id"], fresh=True)  # one fresh read serves the whole batch
    return sum(dispatch(job, refresh=False) for job in waiting)
