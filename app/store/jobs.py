"""Jobs, their events and control replies.

A job lives in its workspace partition under `JOB#<id>` (ids are time-ordered, so a reverse
query lists newest first). While unfinished it also sits in the sparse `open` index — under
`JOBS#waiting` until a runtime is assigned, `JOBS#assigned` after — which the sweeper reads.
Events live in a partition of their own per job, `WS#<ws>#JOB#<id>`, keyed by zero-padded
sequence number, and are written only-if-new, so a re-sent event is stored once.
"""

from app.contract.messages import JobStatus
from app.store.accounts import workspace_pk
from app.store.cache import TtlCache
from app.store.table import OPEN_INDEX, Condition, Page, Table, Write

WAITING = "JOBS#waiting"
ASSIGNED = "JOBS#assigned"
_SEQ_WIDTH = 10


def _job_key(workspace_id: str, job_id: str) -> tuple[str, str]:
    return workspace_pk(workspace_id), f"JOB#{job_id}"


def _events_pk(workspace_id: str, job_id: str) -> str:
    return f"{workspace_pk(workspace_id)}#JOB#{job_id}"


def _seq_key(seq: int) -> str:
    return f"EV#{seq:0{_SEQ_WIDTH}d}"


class Jobs:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._running: TtlCache[dict] = TtlCache(cache_seconds)

    # --- jobs ---------------------------------------------------------------------------------

    def item(self, workspace_id: str, job_id: str, created_ms: int, **fields) -> dict:
        pk, sk = _job_key(workspace_id, job_id)
        return {"pk": pk, "sk": sk, "job_id": job_id, "workspace_id": workspace_id,
                "open_pk": WAITING, "open_sk": f"{created_ms:015d}#{workspace_id}#{job_id}", **fields}

    def create_write(self, item: dict) -> Write:
        return Write.put(item, must_not_exist=True)

    def get(self, workspace_id: str, job_id: str) -> dict | None:
        return self.table.get(*_job_key(workspace_id, job_id))

    def running(self, workspace_id: str, job_id: str) -> dict | None:
        """A job for routing a call to its runtime: cached while it is running. A stale entry is
        harmless, because the runtime answers for the job's real state (`not_running`)."""
        job = self._running.get((workspace_id, job_id))
        if job is None:
            job = self.get(workspace_id, job_id)
            if job is not None and job["status"] == JobStatus.running.value:
                self._running.put((workspace_id, job_id), job)
        return job

    def forget(self, workspace_id: str, job_id: str) -> None:
        self._running.forget((workspace_id, job_id))

    def page(self, workspace_id: str, *, limit: int, cursor: str | None, status: str | None = None,
             job_type: str | None = None) -> Page:
        filters = {}
        if status:
            filters["status"] = status
        if job_type:
            filters["type"] = job_type
        return self.table.query(workspace_pk(workspace_id), prefix="JOB#", newest_first=True, limit=limit,
                                cursor=cursor, where=Condition(equals=filters) if filters else None)

    def open_jobs(self, bucket: str, limit: int = 200) -> list[dict]:
        """Unfinished jobs, oldest first, from the sparse index (system scope: the sweeper)."""
        return self.table.query(bucket, index=OPEN_INDEX, limit=limit).items

    def update(self, workspace_id: str, job_id: str, *, set=None, add=None, remove=(),
               condition: Condition | None = None) -> dict:
        return self.table.update(*_job_key(workspace_id, job_id), set=set, add=add, remove=remove,
                                 condition=condition)

    def update_write(self, workspace_id: str, job_id: str, *, set=None, add=None,
                     condition: Condition | None = None) -> Write:
        return Write.update(*_job_key(workspace_id, job_id), set=set, add=add, condition=condition)

    def finish_write(self, workspace_id: str, job_id: str, status: JobStatus, fields: dict,
                     condition: Condition, retain_until: int) -> Write:
        """Move to a final status and out of the open index; only from a non-final status."""
        return Write.update(*_job_key(workspace_id, job_id),
                            set={"status": status.value, "expires_epoch": retain_until, **fields},
                            remove=("open_pk", "open_sk"), condition=condition)

    def requeue_write(self, workspace_id: str, job_id: str, runtime_id: str, open_statuses: list[str],
                      event_seq: int) -> Write:
        """Back to waiting, unassigned and unclaimed, if still on `runtime_id` and unfinished."""
        return Write.update(*_job_key(workspace_id, job_id),
                            set={"status": JobStatus.queued.value, "open_pk": WAITING, "lease_until": 0,
                                 "event_seq": event_seq},
                            remove=("runtime_id", "runtime_workspace", "claim_id"),
                            condition=Condition(equals={"runtime_id": runtime_id}, in_={"status": open_statuses}))

    # --- events -------------------------------------------------------------------------------

    def event_item(self, workspace_id: str, job_id: str, seq: int, **fields) -> dict:
        return {"pk": _events_pk(workspace_id, job_id), "sk": _seq_key(seq), "seq": seq, **fields}

    def event_write(self, item: dict) -> Write:
        return Write.put(item, must_not_exist=True)

    def events_after(self, workspace_id: str, job_id: str, after_seq: int, limit: int = 500) -> list[dict]:
        return self.table.query(_events_pk(workspace_id, job_id), after=_seq_key(after_seq), limit=limit).items

    def latest_event(self, workspace_id: str, job_id: str, *, step: str, scan: int = 50) -> dict | None:
        """The newest of the last `scan` events with this step."""
        page = self.table.query(_events_pk(workspace_id, job_id), prefix="EV#", newest_first=True, limit=scan)
        return next((event for event in page.items if event.get("step") == step), None)

    def last_seq(self, workspace_id: str, job_id: str) -> int:
        page = self.table.query(_events_pk(workspace_id, job_id), prefix="EV#", newest_first=True, limit=1)
        return page.items[0]["seq"] if page.items else 0

    # --- control replies ----------------------------------------------------------------------

    def reply_item(self, workspace_id: str, request_id: str, expires_epoch: int, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"REPLY#{request_id}", "request_id": request_id,
                "expires_epoch": expires_epoch, **fields}

    def get_reply(self, workspace_id: str, request_id: str) -> dict | None:
        return self.table.get(workspace_pk(workspace_id), f"REPLY#{request_id}")

    def delete_reply(self, workspace_id: str, request_id: str) -> None:
        self.table.delete(workspace_pk(workspace_id), f"REPLY#{request_id}")
