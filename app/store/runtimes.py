"""Runtimes and join-token records.

A runtime lives in its workspace's partition; shared runtimes (the platform's own fleet, serving
every workspace) live in the `shared` partition. Every runtime also sits in the sparse open index
under `RUNTIMES`, which only the sweeper and the local stack read.

Dispatch and control read a partition's runtimes on every job and every call, so those reads
are cached briefly (`listed`); callers treat a cached record as a hint and the conditional writes
as the truth.
"""

from typing import Any

from app.domain.runtimes import JoinToken, Runtime
from app.errors import ConditionFailed
from app.store import keys
from app.store.cache import TtlCache
from app.store.records import attributes, record
from app.store.table import OPEN_INDEX, Condition, Page, Table, Write


def _runtime(item: dict) -> Runtime:
    return record(Runtime, item)


class Runtimes:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._listed: TtlCache[list[Runtime]] = TtlCache(cache_seconds)

    def register(self, runtime: Runtime) -> Write:
        pk, sk = keys.runtime(runtime.workspace_id, runtime.runtime_id)
        item = {"pk": pk, "sk": sk, **attributes(runtime, skip=("reported_active_jobs",)),
                keys.OPEN_PK: keys.RUNTIMES, keys.OPEN_SK: runtime.runtime_id}
        return Write.put(item, must_not_exist=True)

    def get(self, workspace_id: str, runtime_id: str) -> Runtime | None:
        item = self.table.get(*keys.runtime(workspace_id, runtime_id))
        return _runtime(item) if item else None

    def in_workspace(self, workspace_id: str) -> list[Runtime]:
        return [_runtime(item) for item in self.table.query(keys.workspace_pk(workspace_id), prefix=keys.RUNTIME).items]

    def listed(self, workspace_id: str, *, fresh: bool = False) -> list[Runtime]:
        """A partition's runtimes, possibly a few seconds old unless `fresh`."""
        runtimes = None if fresh else self._listed.get(workspace_id)
        if runtimes is None:
            runtimes = self.in_workspace(workspace_id)
            self._listed.put(workspace_id, runtimes)
        return runtimes

    def find(self, workspace_id: str, runtime_id: str) -> Runtime | None:
        """One runtime, from the cached listing when it is there."""
        cached = self._listed.get(workspace_id)
        found = next((r for r in cached or () if r.runtime_id == runtime_id), None)
        return found if found is not None else self.get(workspace_id, runtime_id)

    def forget(self, workspace_id: str) -> None:
        """Drop a partition's cached listing; call after a runtime joins, leaves or goes offline."""
        self._listed.forget(workspace_id)

    def all(self) -> list[Runtime]:
        """Every runtime of every workspace (system scope)."""
        return [_runtime(item) for item in self.table.query(keys.RUNTIMES, index=OPEN_INDEX).items]

    def record_heartbeat(self, workspace_id: str, runtime_id: str, changes: dict[str, Any]) -> Runtime:
        """Apply what a heartbeat reports (fields of Runtime) and return the runtime as it now is."""
        return _runtime(self.table.update(*keys.runtime(workspace_id, runtime_id), set=changes))

    def mark_offline(self, runtime: Runtime) -> bool:
        """Record a silent runtime as offline; False when it heartbeated since `runtime` was read."""
        try:
            self.table.update(*keys.runtime(runtime.workspace_id, runtime.runtime_id), set={"status": "offline"},
                              condition=Condition(equals={"last_heartbeat": runtime.last_heartbeat}))
        except ConditionFailed:
            return False
        return True

    def move_queues(self, runtime: Runtime, jobs_queue_url: str, control_queue_url: str) -> None:
        """Point the runtime at (re-created) queues."""
        self.table.update(*keys.runtime(runtime.workspace_id, runtime.runtime_id),
                          set={"jobs_queue_url": jobs_queue_url, "control_queue_url": control_queue_url})

    def take_slot(self, runtime: Runtime) -> Write:
        """Take one job slot; the transaction fails when the runtime is full, or gone or going (a
        placement from a listing read before its deletion began)."""
        return Write.update(*keys.runtime(runtime.workspace_id, runtime.runtime_id), add={"active_jobs": 1},
                            condition=Condition(below={"active_jobs": runtime.max_concurrent_jobs},
                                                missing=("removed_at",)))

    def release_slot(self, workspace_id: str, runtime_id: str) -> Write:
        return Write.update(*keys.runtime(workspace_id, runtime_id), add={"active_jobs": -1})

    def begin_removal(self, runtime: Runtime, at: str) -> Write:
        """Mark a runtime as being deleted: from this write on, no job is placed on it."""
        return Write.update(*keys.runtime(runtime.workspace_id, runtime.runtime_id), set={"removed_at": at})

    def delete(self, runtime: Runtime) -> None:
        """The runtime's record, and with it its sealed runtime key."""
        self.table.delete(*keys.runtime(runtime.workspace_id, runtime.runtime_id))

    # --- join tokens ------------------------------------------------------------------------

    def add_join_token(self, token: JoinToken) -> Write:
        pk, sk = keys.join_token(token.workspace_id, token.token_id)
        return Write.put({"pk": pk, "sk": sk, **attributes(token, skip=("workspace_id",))}, must_not_exist=True)

    def join_tokens(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page[JoinToken]:
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.JOIN_TOKEN, newest_first=True,
                                limit=limit, cursor=cursor)
        return page.map(lambda item: record(JoinToken, item, workspace_id=workspace_id))

    def join_token(self, workspace_id: str, token_id: str) -> JoinToken | None:
        item = self.table.get(*keys.join_token(workspace_id, token_id))
        return record(JoinToken, item, workspace_id=workspace_id) if item else None

    def spend_join_token(self, workspace_id: str, token_id: str) -> None:
        try:
            self.table.update(*keys.join_token(workspace_id, token_id), add={"uses_left": -1})
        except ConditionFailed:
            pass  # deleted meanwhile: its credential was spent just before, nothing is left to count

    def delete_join_token(self, token: JoinToken) -> Write:
        return Write.delete(*keys.join_token(token.workspace_id, token.token_id))
