"""Runtimes and join-token records.

A runtime lives in its workspace's partition; shared runtimes (the platform's own fleet, serving
every workspace) live in the `shared` partition. Every runtime also sits in the sparse `open`
index under `RUNTIMES`, which only the sweeper reads.
"""

from app.store.accounts import workspace_pk
from app.store.table import OPEN_INDEX, Condition, Page, Table

SHARED_WORKSPACE = "shared"


class Runtimes:
    def __init__(self, table: Table):
        self.table = table

    def item(self, workspace_id: str, runtime_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"RT#{runtime_id}", "runtime_id": runtime_id,
                "workspace_id": workspace_id, "open_pk": "RUNTIMES", "open_sk": runtime_id, **fields}

    def get(self, workspace_id: str, runtime_id: str) -> dict | None:
        return self.table.get(workspace_pk(workspace_id), f"RT#{runtime_id}")

    def in_workspace(self, workspace_id: str) -> list[dict]:
        return self.table.query(workspace_pk(workspace_id), prefix="RT#").items

    def all(self) -> list[dict]:
        return self.table.query("RUNTIMES", index=OPEN_INDEX).items

    def update(self, workspace_id: str, runtime_id: str, *, set=None, add=None, condition: Condition | None = None,
               expect_version: int | None = None) -> dict:
        return self.table.update(workspace_pk(workspace_id), f"RT#{runtime_id}", set=set, add=add,
                                 condition=condition, expect_version=expect_version)

    def reserve_slot(self, workspace_id: str, runtime_id: str, max_jobs: int) -> dict:
        """Take one job slot; ConditionFailed when the runtime is full."""
        return self.update(workspace_id, runtime_id, add={"active_jobs": 1},
                           condition=Condition(below={"active_jobs": max_jobs}))

    # --- join tokens ------------------------------------------------------------------------

    def join_token_item(self, workspace_id: str, token_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"JOIN#{token_id}", "token_id": token_id, **fields}

    def list_join_tokens(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page:
        return self.table.query(workspace_pk(workspace_id), prefix="JOIN#", newest_first=True, limit=limit,
                                cursor=cursor)

    def spend_join_token(self, workspace_id: str, token_id: str) -> None:
        self.table.update(workspace_pk(workspace_id), f"JOIN#{token_id}", add={"uses_left": -1})
