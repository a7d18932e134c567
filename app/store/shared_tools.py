"""Shared tools' OAuth records: client registrations and users' grants in the workspace's
partition; sign-ins in progress under their state's digest (the callback knows nothing else)."""

from app.domain.shared_tools import Grant, OAuthClient, PendingSignIn
from app.errors import ConditionFailed
from app.store import keys
from app.store.records import attributes, record
from app.store.table import Condition, Table, Write


class SharedTools:
    def __init__(self, table: Table):
        self.table = table

    # --- client registrations ----------------------------------------------------------------

    def client(self, workspace_id: str, tool_id: str) -> OAuthClient | None:
        item = self.table.get(*keys.oauth_client(workspace_id, tool_id))
        return record(OAuthClient, item) if item else None

    def clients(self, workspace_id: str) -> list[OAuthClient]:
        items = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.OAUTH_CLIENT).items
        return [record(OAuthClient, item) for item in items]

    def put_client(self, client: OAuthClient) -> Write:
        pk, sk = keys.oauth_client(client.workspace_id, client.tool_id)
        return Write.put({"pk": pk, "sk": sk, **attributes(client)})

    def remove_client(self, workspace_id: str, tool_id: str) -> bool:
        return self.table.delete(*keys.oauth_client(workspace_id, tool_id))

    # --- sign-ins in progress ------------------------------------------------------------------

    def add_pending(self, pending: PendingSignIn) -> None:
        pk, sk = keys.oauth_state(pending.state_digest)
        self.table.put({"pk": pk, "sk": sk, **attributes(pending, skip=("state_digest",))}, must_not_exist=True)

    def take_pending(self, state_digest: str) -> PendingSignIn | None:
        """The sign-in a state names, removed as it is read: exactly one caller ever gets it."""
        pk, sk = keys.oauth_state(state_digest)
        item = self.table.get(pk, sk)
        if item is None or not self.table.delete(pk, sk, condition=Condition(equals={"version": item["version"]})):
            return None
        return record(PendingSignIn, item, state_digest=state_digest)

    # --- grants ----------------------------------------------------------------------------------

    def grant(self, workspace_id: str, user_id: str, tool_id: str) -> Grant | None:
        item = self.table.get(*keys.oauth_grant(workspace_id, user_id, tool_id))
        return record(Grant, item) if item else None

    def grants_of(self, workspace_id: str, user_id: str) -> list[Grant]:
        items = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.grants_of(user_id)).items
        return [record(Grant, item) for item in items]

    def put_grant(self, grant: Grant) -> Write:
        """A new connection, replacing any earlier one of the same user and tool (give it a version
        above the earlier one's, so a refresh of the earlier tokens cannot overwrite it)."""
        pk, sk = keys.oauth_grant(grant.workspace_id, grant.user_id, grant.tool_id)
        return Write.put({"pk": pk, "sk": sk, **attributes(grant)})

    def refreshed(self, grant: Grant, *, tokens: str, scopes: list[str], expires_at: float | None,
                  refreshable: bool, refreshed_at: str) -> Grant | None:
        """The grant with refreshed tokens, if nobody changed it since it was read (else None:
        another request refreshed it first, or it was removed)."""
        changes: dict[str, object] = {"tokens": tokens, "scopes": scopes, "refreshable": refreshable,
                                      "refreshed_at": refreshed_at}
        remove: tuple[str, ...] = ()
        if expires_at is None:
            remove = ("expires_at",)
        else:
            changes["expires_at"] = expires_at
        try:
            item = self.table.update(*keys.oauth_grant(grant.workspace_id, grant.user_id, grant.tool_id),
                                     set=changes, remove=remove, expect_version=grant.version)
        except ConditionFailed:
            return None
        return record(Grant, item)

    def record_email(self, grant: Grant, email: str, source: str) -> None:
        try:
            self.table.update(*keys.oauth_grant(grant.workspace_id, grant.user_id, grant.tool_id),
                              set={"email": email, "email_source": source}, expect_version=grant.version)
        except ConditionFailed:
            pass  # changed meanwhile (refreshed, reconnected): the next read asks again

    def remove_grant(self, grant: Grant) -> Write:
        return Write.delete(*keys.oauth_grant(grant.workspace_id, grant.user_id, grant.tool_id), must_exist=True)
