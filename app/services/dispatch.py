"""Choosing a runtime for a job and sending it there.

A job goes to an online runtime of its workspace (preferred) or the shared fleet that
advertises the job's type and has a free slot. The slot is reserved with a conditional
increment, then the job is assigned with a conditional write (it must still be waiting), and
only then is the message sent: a lost race at any step undoes the step before it.
"""

from app import clock, queues
from app.errors import ConditionFailed
from app.logs import get_logger, log_event
from app.messages import JobMessage, JobStatus, JobType
from app.services import runtimes, system
from app.store import get_store
from app.store.jobs import ASSIGNED, WAITING
from app.store.runtimes import SHARED_WORKSPACE
from app.store.table import Condition

logger = get_logger("berth.dispatch")


def _can_serve(runtime: dict, job: dict, now: float) -> bool:
    return (
        runtimes.effective_status(runtime, now) == "online"
        and job["type"] in runtime.get("capabilities", [])
        and runtime.get("active_jobs", 0) < runtime.get("max_concurrent_jobs", 0)
        and (runtime["workspace_id"] in (job["workspace_id"], SHARED_WORKSPACE))
        and job.get("pinned_runtime_id") in (None, runtime["runtime_id"])
    )


def _ranked(candidates: list[dict], job: dict) -> list[dict]:
    own_first = lambda r: (r["workspace_id"] != job["workspace_id"],  # noqa: E731
                           r.get("active_jobs", 0) / max(r.get("max_concurrent_jobs", 1), 1))
    return sorted(candidates, key=own_first)


SANDBOX_JOB_TYPES = (JobType.mcp_test.value, JobType.mcp_run.value, JobType.tool_run.value)


def job_message(job: dict) -> JobMessage:
    policy = system.sandbox_policy(job["ttl_seconds"]) if job["type"] in SANDBOX_JOB_TYPES else None
    return JobMessage(job_id=job["job_id"], workspace_id=job["workspace_id"], type=JobType(job["type"]),
                      payload=job.get("payload", {}), expires_at=job["deadline"], dispatch=job.get("dispatch", 1),
                      policy=policy)


def dispatch(job: dict, *, candidates: list[dict] | None = None) -> bool:
    """Assign a waiting job to the best runtime and send it; False when none can take it now."""
    store = get_store()
    now = clock.now()
    pool = candidates if candidates is not None else runtimes.candidate_runtimes(job["workspace_id"])
    for runtime in _ranked([r for r in pool if _can_serve(r, job, now)], job):
        try:
            store.runtimes.reserve_slot(runtime["workspace_id"], runtime["runtime_id"], runtime["max_concurrent_jobs"])
        except ConditionFailed:
            continue  # filled up since we read it
        try:
            assigned = store.jobs.update(
                job["workspace_id"], job["job_id"],
                set={"runtime_id": runtime["runtime_id"], "runtime_workspace": runtime["workspace_id"],
                     "dispatched_at": now, "open_pk": ASSIGNED},
                add={"dispatch": 1},
                condition=Condition(equals={"status": JobStatus.queued.value, "open_pk": WAITING}),
            )
        except ConditionFailed:
            store.runtimes.update(runtime["workspace_id"], runtime["runtime_id"], add={"active_jobs": -1})
            return False  # cancelled or dispatched by someone else meanwhile
        queues.send(runtime["jobs_queue_url"], job_message(assigned))
        log_event(logger, "job dispatched", job_id=job["job_id"], runtime_id=runtime["runtime_id"],
                  dispatch=assigned["dispatch"])
        return True
    return False


def resend(job: dict) -> None:
    """Send an assigned job's message again (the first was lost); claims fence duplicates."""
    runtime = get_store().runtimes.get(job["runtime_workspace"], job["runtime_id"])
    if runtime is not None:
        queues.send(runtime["jobs_queue_url"], job_message(job))


def dispatch_waiting(runtime: dict, limit: int = 100) -> int:
    """When a runtime comes online: hand it (or a better runtime) the jobs that waited for one."""
    sent = 0
    waiting = get_store().jobs.open_jobs(WAITING, limit=limit)
    for job in waiting:
        if runtime["workspace_id"] not in (job["workspace_id"], SHARED_WORKSPACE):
            continue
        if job["type"] not in runtime.get("capabilities", []):
            continue
        sent += dispatch(job)
    return sent
