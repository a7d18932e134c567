"""Runtimes and join-token records.

A runtime lives in its workspace's partition; shared runtimes (the platform's own fleet, serving
every workspace) live in the `shared` partition. Every runtime also sits in the sparse `open`
index under `RUNTIMES`, which only the sweeper reads.

Dispatch and control read a partition's runtimes on every job and every call, so those reads
are cached briefly (`listed`); callers treat a cached item as a hint and the conditional writes
as the truth.
"""

from app.store.accounts import workspace_pk
from app.store.cache import TtlCache
from app.store.table import OPEN_INDEX, Condition, Page, Table, Write

SHARED_WORKSPACE = "shared"


class Runtimes:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._listed: TtlCache[list[dict]] = TtlCache(cache_seconds)

    def item(self, workspace_id: str, runtime_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"RT#{runtime_id}", "runtime_id": runtime_id,
                "workspace_id": workspace_id, "open_pk": "RUNTIMES", "open_sk": runtime_id, **fields}

    def get(self, workspace_id: str, runtime_id: str) -> dict | None:
        return self.table.get(workspace_pk(workspace_id), f"RT#{runtime_id}")

    def in_workspace(self, workspace_id: str) -> list[dict]:
        return self.table.query(workspace_pk(workspace_id), prefix="RT#").items

    def listed(self, workspace_id: str, *, fresh: bool = False) -> list[dict]:
        """A partition's runtimes, possibly a few seconds old unless `fresh`."""
        runtimes = None if fresh else self._listed.get(workspace_id)
        if runtimes is None:
            runtimes = self.in_workspace(workspace_id)
            self._listed.put(workspace_id, runtimes)
        return runtimes

    def find(self, workspace_id: str, runtime_id: str) -> dict | None:
        """One runtime, from the cached listing when it is there."""
        cached = self._listed.get(workspace_id)
        found = next((r for r in cached or () if r["runtime_id"] == runtime_id), None)
        return found if found is not None else self.get(workspace_id, runtime_id)

    def forget(self, workspace_id: str) -> None:
        """Drop a partition's cached listing; call after a runtime joins, leaves or goes offline."""
        self._listed.forget(workspace_id)

    def all(self) -> list[dict]:
        return self.table.query("RUNTIMES", index=OPEN_INDEX).items

    def update(self, workspace_id: str, runtime_id: str, *, set=None, add=None, condition: Condition | None = None,
               expect_version: int | None = None) -> dict:
        return self.table.update(workspace_pk(workspace_id), f"RT#{runtime_id}", set=set, add=add,
                                 condition=condition, expect_version=expect_version)

    def slot_write(self, workspace_id: str, runtime_id: str, max_jobs: int) -> Write:
        """Take one job slot; the transaction fails when the runtime is full."""
        return Write.update(workspace_pk(workspace_id), f"RT#{runtime_id}", add={"active_jobs": 1},
                            condition=Condition(below={"active_jobs": max_jobs}))

    def release_write(self, workspace_id: str, runtime_id: str) -> Write:
        return Write.update(workspace_pk(workspace_id), f"RT#{runtime_id}", add={"active_jobs": -1})

    # --- join tokens ------------------------------------------------------------------------

    def join_token_item(self, workspace_id: str, token_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"JOIN#{token_id}", "token_id": token_id, **fields}

    def list_join_tokens(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page:
        return self.table.query(workspace_pk(workspace_id), prefix="JOIN#", newest_first=True, limit=limit,
                                cursor=cursor)

    def spend_join_token(self, workspace_id: str, token_id: str) -> None:
        self.table.update(workspace_pk(workspace_id), f"JOIN#{token_id}", add={"uses_left": -1})
