"""Workspaces, users, sessions and API keys.

An email address is claimed by its own item, written in the signup's transaction, so two signups
can never take the same one.
"""

from app.domain.accounts import ApiKey, OperatorGrant, Session, User, Workspace
from app.errors import ConditionFailed
from app.store import keys
from app.store.records import attributes, record
from app.store.table import Condition, Page, Table, Write


class Accounts:
    def __init__(self, table: Table):
        self.table = table

    # --- workspaces and users -----------------------------------------------------------

    def create_account(self, workspace: Workspace, owner: User, extra: list[Write]) -> None:
        """The workspace, its owner and the owner's email claim, with `extra` writes, all or nothing;
        ConditionFailed when the email is taken."""
        email_pk, email_sk = keys.email(owner.email)
        claim = {"pk": email_pk, "sk": email_sk, "workspace_id": owner.workspace_id, "user_id": owner.user_id}
        self.table.transact([Write.put(claim, must_not_exist=True),
                             Write.put(self._workspace_item(workspace), must_not_exist=True),
                             Write.put(self._user_item(owner), must_not_exist=True), *extra])

    def ensure_workspace(self, workspace: Workspace) -> None:
        try:
            self.table.put(self._workspace_item(workspace), must_not_exist=True)
        except ConditionFailed:
            pass

    def workspace(self, workspace_id: str) -> Workspace | None:
        item = self.table.get(*keys.workspace(workspace_id))
        return record(Workspace, item) if item else None

    def record_matrixshell(self, workspace_id: str, job_id: str, installed_at: str) -> None:
        self.table.update(*keys.workspace(workspace_id),
                          set={"matrixshell_job_id": job_id, "matrixshell_installed_at": installed_at})

    def take_job_slot(self, workspace_id: str, limit: int) -> Write:
        """Count one more unfinished job; the transaction fails when the workspace has `limit`."""
        return Write.update(*keys.workspace(workspace_id), add={"open_jobs": 1},
                            condition=Condition(below={"open_jobs": limit}))

    def release_job_slot(self, workspace_id: str) -> Write:
        return Write.update(*keys.workspace(workspace_id), add={"open_jobs": -1})

    def user(self, workspace_id: str, user_id: str) -> User | None:
        item = self.table.get(*keys.user(workspace_id, user_id))
        return record(User, item) if item else None

    def user_by_email(self, email: str) -> tuple[str, str] | None:
        """(workspace id, user id) of the account that claimed `email`."""
        claim = self.table.get(*keys.email(email))
        return (claim["workspace_id"], claim["user_id"]) if claim else None

    def set_password(self, workspace_id: str, user_id: str, password_hash: str) -> None:
        self.table.update(*keys.user(workspace_id, user_id), set={"password_hash": password_hash})

    def mark_email_verified(self, workspace_id: str, user_id: str) -> None:
        self.table.update(*keys.user(workspace_id, user_id), set={"email_verified": True})

    def set_operator_grant(self, workspace_id: str, user_id: str, grant: OperatorGrant) -> User:
        return record(User, self.table.update(*keys.user(workspace_id, user_id), set={"operator_grant": grant}))

    @staticmethod
    def _workspace_item(workspace: Workspace) -> dict:
        pk, sk = keys.workspace(workspace.workspace_id)
        return {"pk": pk, "sk": sk, **attributes(workspace)}

    @staticmethod
    def _user_item(user: User) -> dict:
        pk, sk = keys.user(user.workspace_id, user.user_id)
        return {"pk": pk, "sk": sk, **attributes(user)}

    # --- sessions (listed so that `logout?all=true` can end them all) -------------------

    def add_session(self, session: Session) -> Write:
        pk, sk = keys.session(session.workspace_id, session.user_id, session.session_id)
        return Write.put({"pk": pk, "sk": sk, "digest": session.digest, "expires_epoch": session.expires_epoch})

    def sessions_of(self, workspace_id: str, user_id: str) -> list[Session]:
        items = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.sessions_of(user_id)).items
        return [Session(session_id=item["sk"].removeprefix(keys.sessions_of(user_id)), workspace_id=workspace_id,
                        user_id=user_id, digest=item["digest"], expires_epoch=item["expires_epoch"])
                for item in items]

    def end_session(self, workspace_id: str, user_id: str, session_id: str) -> Write:
        return Write.delete(*keys.session(workspace_id, user_id, session_id))

    def delete_session(self, session: Session) -> None:
        self.table.delete(*keys.session(session.workspace_id, session.user_id, session.session_id))

    # --- API keys -------------------------------------------------------------------------

    def add_api_key(self, key: ApiKey) -> Write:
        pk, sk = keys.api_key(key.workspace_id, key.key_id)
        return Write.put({"pk": pk, "sk": sk, **attributes(key, skip=("workspace_id",))}, must_not_exist=True)

    def api_keys(self, workspace_id: str, *, limit: int, cursor: str | None) -> Page[ApiKey]:
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.API_KEY, newest_first=True, limit=limit,
                                cursor=cursor)
        return page.map(lambda item: record(ApiKey, item, workspace_id=workspace_id))

    def api_key(self, workspace_id: str, key_id: str) -> ApiKey | None:
        item = self.table.get(*keys.api_key(workspace_id, key_id))
        return record(ApiKey, item, workspace_id=workspace_id) if item else None

    def revoke_api_key(self, key: ApiKey, revoked_at: str) -> Write:
        return Write.update(*keys.api_key(key.workspace_id, key.key_id), set={"revoked_at": revoked_at},
                            condition=Condition(missing=("revoked_at",)))
