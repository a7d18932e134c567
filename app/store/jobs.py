"""Jobs and their events.

A job lives in its workspace's partition (ids are time-ordered, so a reverse query lists newest
first). While unfinished it also sits in the sparse open index, under `JOBS#waiting` until a
runtime is assigned and `JOBS#assigned` after, which the sweeper and dispatch read. Events live
in a partition of their own per job, keyed by zero-padded sequence number, and are written
only-if-new, so a re-sent event is stored once.
"""

from collections.abc import Collection
from typing import Any

from app.contract.messages import EventStatus, JobStatus, JobType
from app.domain.jobs import OPEN_JOB_STATUSES, Claim, Job, JobEvent
from app.store import keys
from app.store.cache import TtlCache
from app.store.records import attributes, record
from app.store.table import OPEN_INDEX, TTL_ATTRIBUTE, Condition, Page, Table, Write

# What a job gets only after it was created: by its claims, events, cancellation and outcome.
_LATER = ("claim_id", "claimed_by", "lease_until", "claims", "started_at", "started_epoch", "last_event_at",
          "cancel_requested", "finished_at", "result", "error")
_OPEN = [status.value for status in OPEN_JOB_STATUSES]


def _job(item: dict) -> Job:
    return record(Job, item, type=JobType(item["type"]), status=JobStatus(item["status"]))


def _event(item: dict) -> JobEvent:
    return record(JobEvent, item, status=EventStatus(item["status"]))


def _values(statuses: Collection[JobStatus]) -> list[str]:
    return [status.value for status in statuses]


class Jobs:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._running: TtlCache[Job] = TtlCache(cache_seconds)

    # --- reads ----------------------------------------------------------------------------------

    def get(self, workspace_id: str, job_id: str) -> Job | None:
        item = self.table.get(*keys.job(workspace_id, job_id))
        return _job(item) if item else None

    def running(self, workspace_id: str, job_id: str) -> Job | None:
        """A job for routing a call to its runtime: cached while it is running. A stale entry is
        harmless, because the runtime answers for the job's real state (`not_running`)."""
        job = self._running.get((workspace_id, job_id))
        if job is None:
            job = self.get(workspace_id, job_id)
            if job is not None and job.status == JobStatus.running:
                self._running.put((workspace_id, job_id), job)
        return job

    def forget(self, workspace_id: str, job_id: str) -> None:
        self._running.forget((workspace_id, job_id))

    def page(self, workspace_id: str, *, limit: int, cursor: str | None, status: JobStatus | None = None,
             job_type: JobType | None = None) -> Page[Job]:
        filters = {}
        if status:
            filters["status"] = status.value
        if job_type:
            filters["type"] = job_type.value
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.JOB, newest_first=True, limit=limit,
                                cursor=cursor, where=Condition(equals=filters) if filters else None)
        return page.map(_job)

    def waiting(self, limit: int = 200) -> list[Job]:
        """Unfinished jobs no runtime has, oldest first (system scope: dispatch and the sweeper)."""
        return [_job(item) for item in self.table.query(keys.JOBS_WAITING, index=OPEN_INDEX, limit=limit).items]

    def assigned(self, limit: int = 200) -> list[Job]:
        """Unfinished jobs on a runtime, oldest first (system scope: the sweeper)."""
        return [_job(item) for item in self.table.query(keys.JOBS_ASSIGNED, index=OPEN_INDEX, limit=limit).items]

    def on_runtime(self, runtime_id: str) -> list[Job]:
        """Every unfinished job assigned to a runtime (system scope: deleting the runtime)."""
        page = self.table.query(keys.JOBS_ASSIGNED, index=OPEN_INDEX,
                                where=Condition(equals={"runtime_id": runtime_id}))
        return [_job(item) for item in page.items]

    # --- writes for transactions ----------------------------------------------------------------

    def create(self, job: Job) -> Write:
        """A new job, waiting or (when it names a runtime) assigned."""
        pk, sk = keys.job(job.workspace_id, job.job_id)
        item = {"pk": pk, "sk": sk, **attributes(job, skip=_LATER),
                keys.OPEN_PK: keys.JOBS_ASSIGNED if job.runtime_id else keys.JOBS_WAITING,
                keys.OPEN_SK: keys.job_open_sk(job.created_epoch, job.workspace_id, job.job_id)}
        return Write.put(item, must_not_exist=True)

    def assign(self, job: Job) -> Write:
        """Put a waiting job on the runtime `job` names (see Job.assigned_to), if still waiting."""
        return Write.update(*keys.job(job.workspace_id, job.job_id),
                            set={"runtime_id": job.runtime_id, "runtime_workspace": job.runtime_workspace,
                                 "dispatched_at": job.dispatched_at, keys.OPEN_PK: keys.JOBS_ASSIGNED},
                            add={"dispatch": 1},
                            condition=Condition(equals={"status": JobStatus.queued.value,
                                                        keys.OPEN_PK: keys.JOBS_WAITING}))

    def claim_first(self, workspace_id: str, job_id: str, claim: Claim, start_seq: int) -> Write:
        """A first delivery's claim: only of the dispatch it carries, before anything else happened
        to the job (its last event is the one before `start_seq`)."""
        condition = Condition(equals={"runtime_id": claim.runtime_id, "dispatch": claim.dispatch,
                                      "status": JobStatus.queued.value, "event_seq": start_seq - 1},
                              missing=("claim_id", "started_at"))
        return self._claim(workspace_id, job_id, claim, condition)

    def claim_again(self, workspace_id: str, job_id: str, claim: Claim, lapsed_claim_id: str | None) -> Write:
        """A claim of an unfinished job of this dispatch: unclaimed, or whose `lapsed_claim_id` lapsed."""
        condition = Condition(equals={"runtime_id": claim.runtime_id, "dispatch": claim.dispatch},
                              in_={"status": _OPEN})
        if lapsed_claim_id:
            condition.equals["claim_id"] = lapsed_claim_id
        else:
            condition.missing = ("claim_id",)
        return self._claim(workspace_id, job_id, claim, condition)

    def _claim(self, workspace_id: str, job_id: str, claim: Claim, condition: Condition) -> Write:
        changes: dict[str, Any] = {"status": JobStatus.running.value, "claim_id": claim.claim_id,
                                   "claimed_by": claim.worker_id, "lease_until": claim.lease_until}
        if claim.started_at is not None:
            changes.update(started_at=claim.started_at, started_epoch=claim.started_epoch)
        return Write.update(*keys.job(workspace_id, job_id), set=changes, add={"claims": 1}, condition=condition)

    def progress(self, workspace_id: str, job_id: str, claim_id: str, at: str) -> Write:
        """Note the claimant's progress, only while it runs the job and nobody asked to cancel it."""
        return Write.update(*keys.job(workspace_id, job_id), set={"last_event_at": at},
                            condition=Condition(equals={"claim_id": claim_id, "status": JobStatus.running.value},
                                                missing=("cancel_requested",)))

    def finish(self, job: Job, status: JobStatus, *, from_statuses: Collection[JobStatus], finished_at: str,
               retain_until: int, result: Any = None, error: str | None = None, claim_id: str | None = None) -> Write:
        """Move to a final status and out of the open index: only from `from_statuses`, only while on
        the runtime `job` names (whose slot is released with it) and, with `claim_id`, only for that
        claim. A complete job records `result`; any other its `error`, if given."""
        condition = Condition(in_={"status": _values(from_statuses)})
        if claim_id:
            condition.equals["claim_id"] = claim_id
        if job.runtime_id:
            condition.equals["runtime_id"] = job.runtime_id
        else:
            condition.missing = ("runtime_id",)
        changes: dict[str, Any] = {"status": status.value, TTL_ATTRIBUTE: retain_until, "finished_at": finished_at}
        if status == JobStatus.complete:
            changes["result"] = result
        elif error is not None:
            changes["error"] = error
        # An ended job's secrets are of no more use to anyone: they do not stay for its retention.
        return Write.update(*keys.job(job.workspace_id, job.job_id), set=changes,
                            remove=(keys.OPEN_PK, keys.OPEN_SK, "secrets"), condition=condition)

    def requeue(self, job: Job, event_seq: int) -> Write:
        """Back to waiting, unassigned and unclaimed, if still on its runtime and unfinished."""
        return Write.update(*keys.job(job.workspace_id, job.job_id),
                            set={"status": JobStatus.queued.value, keys.OPEN_PK: keys.JOBS_WAITING, "lease_until": 0,
                                 "event_seq": event_seq},
                            remove=("runtime_id", "runtime_workspace", "claim_id"),
                            condition=Condition(equals={"runtime_id": job.runtime_id}, in_={"status": _OPEN}))

    # --- single writes --------------------------------------------------------------------------

    def request_cancel(self, job: Job) -> Job:
        """Flag an unfinished job for its worker to stop; ConditionFailed when it already ended."""
        item = self.table.update(*keys.job(job.workspace_id, job.job_id), set={"cancel_requested": True},
                                 condition=Condition(in_={"status": _OPEN}))
        return _job(item)

    def renew_lease(self, workspace_id: str, job_id: str, claim_id: str, lease_until: float) -> Job:
        """ConditionFailed when the claim is no longer the job's or the job ended."""
        item = self.table.update(*keys.job(workspace_id, job_id), set={"lease_until": lease_until},
                                 condition=Condition(equals={"claim_id": claim_id}, in_={"status": _OPEN}))
        return _job(item)

    def note_progress(self, workspace_id: str, job_id: str, claim_id: str, at: str) -> None:
        self.table.update(*keys.job(workspace_id, job_id), set={"last_event_at": at},
                          condition=Condition(equals={"claim_id": claim_id}))

    def mark_dispatched(self, job: Job, at: float) -> None:
        """Its message was sent again at `at`."""
        self.table.update(*keys.job(job.workspace_id, job.job_id), set={"dispatched_at": at})

    def change_sandbox(self, job: Job, *, deadline: float | None = None, ttl_seconds: int | None = None,
                       labels: dict[str, str] | None = None, secrets: str | None = None,
                       secret_names: dict[str, list[str]] | None = None) -> Job:
        """Change what a queued or running sandbox job runs with (None: unchanged; `secrets=""`: it
        has none any more)."""
        changes = {name: value for name, value in (("deadline", deadline), ("ttl_seconds", ttl_seconds),
                                                   ("labels", labels), ("secret_names", secret_names),
                                                   ("secrets", secrets or None)) if value is not None}
        item = self.table.update(*keys.job(job.workspace_id, job.job_id), set=changes,
                                 remove=("secrets",) if secrets == "" else (),
                                 condition=Condition(in_={"status": [JobStatus.queued.value,
                                                                     JobStatus.running.value]}))
        return _job(item)

    # --- events ---------------------------------------------------------------------------------

    def add_event(self, workspace_id: str, job_id: str, event: JobEvent) -> Write:
        return Write.put(self._event_item(workspace_id, job_id, event), must_not_exist=True)

    def put_event(self, workspace_id: str, job_id: str, event: JobEvent) -> None:
        """Store one event; ConditionFailed when its number is taken (a re-sent event)."""
        self.table.put(self._event_item(workspace_id, job_id, event), must_not_exist=True)

    def events_after(self, workspace_id: str, job_id: str, after_seq: int, limit: int = 500) -> list[JobEvent]:
        page = self.table.query(keys.events_pk(workspace_id, job_id), after=keys.event_sk(after_seq), limit=limit)
        return [_event(item) for item in page.items]

    def latest_event(self, workspace_id: str, job_id: str, *, step: str, scan: int = 50) -> JobEvent | None:
        """The newest of the last `scan` events with this step."""
        page = self.table.query(keys.events_pk(workspace_id, job_id), prefix=keys.EVENT, newest_first=True,
                                limit=scan)
        return next((_event(item) for item in page.items if item.get("step") == step), None)

    def last_seq(self, workspace_id: str, job_id: str) -> int:
        page = self.table.query(keys.events_pk(workspace_id, job_id), prefix=keys.EVENT, newest_first=True, limit=1)
        return page.items[0]["seq"] if page.items else 0

    @staticmethod
    def _event_item(workspace_id: str, job_id: str, event: JobEvent) -> dict:
        return {"pk": keys.events_pk(workspace_id, job_id), "sk": keys.event_sk(event.seq), **attributes(event)}
