"""The periodic sweep: expire jobs past their TTL, take jobs back from silent runtimes, and
dispatch or re-send jobs that are waiting. Idempotent: running it twice, or on two hosts at
once, changes nothing more than running it once, because every step is a conditional write.
"""

from dataclasses import dataclass, field

from app import clock
from app.logs import get_logger, log_event
from app.services import dispatch, jobs, runtimes
from app.settings import get_settings
from app.store import get_store
from app.store.jobs import ASSIGNED, WAITING

logger = get_logger("berth.sweeper")


@dataclass
class SweepReport:
    expired: int = 0
    runtimes_offline: list[str] = field(default_factory=list)
    requeued: int = 0
    dispatched: int = 0
    resent: int = 0


def sweep() -> SweepReport:
    store = get_store()
    settings = get_settings()
    report = SweepReport()
    now = clock.now()

    offline = set()
    for runtime in store.runtimes.all():
        if runtime.get("status") != "offline" and runtimes.effective_status(runtime, now) == "offline":
            if runtimes.mark_offline(runtime):
                report.runtimes_offline.append(runtime["runtime_id"])
        if runtimes.effective_status(runtime, now) == "offline":
            offline.add(runtime["runtime_id"])

    for job in store.jobs.open_jobs(ASSIGNED, limit=1000) + store.jobs.open_jobs(WAITING, limit=1000):
        if job["deadline"] <= now:
            report.expired += jobs.expire(job)
        elif job.get("runtime_id") in offline:
            report.requeued += jobs.requeue(job, f"runtime {job['runtime_id']} went offline; dispatching again")
        elif job.get("open_pk") == WAITING:
            report.dispatched += dispatch.dispatch(job)
        elif not job.get("claim_id") and now - job.get("dispatched_at", now) > settings.dispatch_stale_seconds:
            dispatch.resend(job)  # its message was lost (e.g. the local stack restarted)
            store.jobs.update(job["workspace_id"], job["job_id"], set={"dispatched_at": now})
            report.resent += 1
    if report.expired or report.runtimes_offline or report.requeued or report.dispatched or report.resent:
        log_event(logger, "sweep", expired=report.expired, offline=report.runtimes_offline,
                  requeued=report.requeued, dispatched=report.dispatched, resent=report.resent)
    return report
