"""Workspaces, users, sessions and API-key records.

Layout: everything a workspace owns lives in partition `WS#<workspace id>`; an email address is
claimed by its own item `EMAIL#<address>` so two signups can never take the same one.
"""

from app.errors import ConditionFailed
from app.store.table import Condition, Table, Write


def workspace_pk(workspace_id: str) -> str:
    return f"WS#{workspace_id}"


def _email_key(email: str) -> tuple[str, str]:
    return f"EMAIL#{email.lower()}", "EMAIL"


class Accounts:
    def __init__(self, table: Table):
        self.table = table

    # --- workspaces and users -----------------------------------------------------------

    def workspace_item(self, workspace_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": "WORKSPACE", "workspace_id": workspace_id, **fields}

    def user_item(self, workspace_id: str, user_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"USER#{user_id}", "user_id": user_id,
                "workspace_id": workspace_id, **fields}

    def email_claim_item(self, email: str, workspace_id: str, user_id: str) -> dict:
        pk, sk = _email_key(email)
        return {"pk": pk, "sk": sk, "workspace_id": workspace_id, "user_id": user_id}

    def create_account(self, workspace: dict, user: dict, email_claim: dict, extra: list[Write]) -> None:
        self.table.transact(
            [Write.put(email_claim, must_not_exist=True), Write.put(workspace, must_not_exist=True),
             Write.put(user, must_not_exist=True), *extra]
        )

    def ensure_workspace(self, workspace: dict) -> None:
        try:
            self.table.put(workspace, must_not_exist=True)
        except ConditionFailed:
            pass

    def get_workspace(self, workspace_id: str) -> dict | None:
        return self.table.get(workspace_pk(workspace_id), "WORKSPACE")

    def get_user(self, workspace_id: str, user_id: str) -> dict | None:
        return self.table.get(workspace_pk(workspace_id), f"USER#{user_id}")

    def find_email(self, email: str) -> dict | None:
        return self.table.get(*_email_key(email))

    def update_user(self, workspace_id: str, user_id: str, **fields) -> dict:
        return self.table.update(workspace_pk(workspace_id), f"USER#{user_id}", set=fields)

    # --- sessions (listed so that `logout?all=true` can end them all) -------------------

    def session_item(self, workspace_id: str, user_id: str, session_id: str, digest: str, expires_epoch: int) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"SESSION#{user_id}#{session_id}", "digest": digest,
                "expires_epoch": expires_epoch}

    def sessions_of(self, workspace_id: str, user_id: str) -> list[dict]:
        return self.table.query(workspace_pk(workspace_id), prefix=f"SESSION#{user_id}#").items

    def session_delete_write(self, workspace_id: str, user_id: str, session_id: str) -> Write:
        return Write.delete(workspace_pk(workspace_id), f"SESSION#{user_id}#{session_id}")

    # --- API keys -------------------------------------------------------------------------

    def api_key_item(self, workspace_id: str, key_id: str, **fields) -> dict:
        return {"pk": workspace_pk(workspace_id), "sk": f"KEY#{key_id}", "key_id": key_id, **fields}

    def list_api_keys(self, workspace_id: str, *, limit: int, cursor: str | None):
        return self.table.query(workspace_pk(workspace_id), prefix="KEY#", newest_first=True, limit=limit,
                                cursor=cursor)

    def get_api_key(self, workspace_id: str, key_id: str) -> dict | None:
        return self.table.get(workspace_pk(workspace_id), f"KEY#{key_id}")

    def revoke_api_key_write(self, workspace_id: str, key_id: str, revoked_at: str) -> Write:
        return Write.update(workspace_pk(workspace_id), f"KEY#{key_id}", set={"revoked_at": revoked_at},
                            condition=Condition(missing=("revoked_at",)))
