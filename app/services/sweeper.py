"""The periodic sweep: expire jobs past their TTL, take jobs back from silent runtimes, and
dispatch or re-send jobs that are waiting. Idempotent: running it twice, or on two hosts at
once, changes nothing more than running it once, because every step is a conditional write.
Each job and runtime is swept on its own: one that fails is logged and the sweep goes on.
"""

import logging
from dataclasses import dataclass, field

from app.clock import Clock
from app.contract.logs import log
from app.domain.jobs import Job, in_turns
from app.logs import get_logger, log_event
from app.services.dispatch import Dispatcher
from app.services.lifecycle import JobLifecycle, each_job
from app.services.runtimes import RuntimeService
from app.settings import Settings
from app.store import Store

logger = get_logger("berth.sweeper")


@dataclass
class SweepReport:
    expired: int = 0
    runtimes_offline: list[str] = field(default_factory=list)
    requeued: int = 0
    dispatched: int = 0
    resent: int = 0


class Sweeper:
    def __init__(self, store: Store, settings: Settings, lifecycle: JobLifecycle, dispatcher: Dispatcher,
                 runtimes: RuntimeService, clock: Clock):
        self.store = store
        self.settings = settings
        self.lifecycle = lifecycle
        self.dispatcher = dispatcher
        self.runtimes = runtimes
        self.clock = clock

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self.clock.now()
        offline = self._silent_runtimes(report, now)
        # Waiting jobs in turns across workspaces: a slot that freed goes to no backlog before another's oldest.
        each_job(self.store.jobs.assigned() + in_turns(self.store.jobs.waiting()),
                 lambda job: self._sweep_job(job, offline, now, report), "sweeping")
        if report.expired or report.runtimes_offline or report.requeued or report.dispatched or report.resent:
            log_event(logger, "sweep", expired=report.expired, offline=report.runtimes_offline,
                      requeued=report.requeued, dispatched=report.dispatched, resent=report.resent)
        return report

    def _silent_runtimes(self, report: SweepReport, now: float) -> set[str]:
        """The runtimes that stopped heartbeating, each marked offline once."""
        offline = set()
        for runtime in self.store.runtimes.all():
            try:
                silent = self.runtimes.status(runtime, now) == "offline"
                if silent:
                    offline.add(runtime.runtime_id)
                if runtime.status != "offline" and silent and self.runtimes.mark_offline(runtime):
                    report.runtimes_offline.append(runtime.runtime_id)
            except Exception:
                log(logger, logging.ERROR, "checking a runtime's heartbeats failed; going on", exc_info=True,
                    runtime_id=runtime.runtime_id)
        return offline

    def _sweep_job(self, job: Job, offline: set[str], now: float, report: SweepReport) -> bool:
        if job.deadline <= now:
            report.expired += self.lifecycle.expire(job)
        elif job.runtime_id in offline:
            report.requeued += self.lifecycle.requeue(job, f"runtime {job.runtime_id} went offline; dispatching again")
        elif job.runtime_id is None:
            report.dispatched += self.dispatcher.dispatch(job)
        elif not job.claim_id and now - (job.dispatched_at or now) > self.settings.dispatch_stale_seconds:
            self.dispatcher.resend(job)  # its message was lost (e.g. the local stack restarted)
            self.store.jobs.mark_dispatched(job, now)
            report.resent += 1
        return True
