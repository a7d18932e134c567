"""Shared tools: catalog entries whose server acts for each user with that user's own OAuth grant.

Where the provider's settings live (docs/decisions.md, "Shared tools: who holds what"): its public
side (endpoints, scopes, which server input the token fills) in the catalog entry, the same for
every workspace; the client registration (client id, client secret sealed with the KMS key, and
any endpoints of a self-hosted provider) per workspace, set by an admin. A user's sign-in is an
OAuth state bound to (workspace, user, tool), single use, with PKCE; the callback stores the
user's tokens sealed for that workspace, under that user. Tokens are refreshed when used within
two minutes of expiry (a lost race to refresh takes the winner's tokens); a user's tokens are read
only for that user's requests.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from anyio import to_thread
from pydantic import ValidationError

from app.auth.principal import Principal
from app.catalog import ServerDocument
from app.catalog.servers import OAuthProvider
from app.clock import Clock
from app.domain.shared_tools import PENDING_KEPT_SECONDS, Grant, OAuthClient, PendingSignIn, secret_hint
from app.errors import Conflict, NotFound, Unprocessable
from app.ids import hash_secret
from app.logs import get_logger, log_event
from app.oauth.errors import InvalidGrant, OAuthError, StateUnknown
from app.oauth.flow import (
    PendingAuthorization,
    TokenSet,
    begin_authorization,
    complete_authorization,
    fresh,
    revoke,
    user_email,
)
from app.oauth.provider import ProviderSettings
from app.services.activity import ActivityLog
from app.services.secrets import SecretBox
from app.settings import Settings
from app.store import Store

logger = get_logger("berth.shared_tools")
CALLBACK_PATH = "/api/auth/callback"
# What each sealed value is bound to (with the workspace).
CLIENT_SECRET, STATE_SECRETS, GRANT_TOKENS = "oauth_client", "oauth_state", "oauth_grant"
EmailSource = Literal["id_token", "userinfo"]


@dataclass(frozen=True, slots=True)
class SharedTool:
    document: ServerDocument
    oauth: OAuthProvider

    @property
    def id(self) -> str:
        return self.document.name


@dataclass(frozen=True, slots=True)
class Connection:
    """One shared tool as one user of a workspace sees it."""

    tool: SharedTool
    client: OAuthClient | None
    grant: Grant | None


@dataclass(frozen=True, slots=True)
class Disconnected:
    revoked_at_provider: bool
    detail: str


def provider_settings(oauth: OAuthProvider, client: OAuthClient, client_secret: str) -> ProviderSettings:
    """The catalog's provider with the workspace's registration over it; ValidationError when
    the whole is not a usable provider (an endpoint missing or not https)."""
    public = oauth.model_dump(exclude={"token_input"}, exclude_none=True)
    return ProviderSettings(**{**public, **client.provider, "client_id": client.client_id,
                               "client_secret": client_secret})


class SharedToolService:
    def __init__(self, store: Store, settings: Settings, secrets: SecretBox, activity: ActivityLog, clock: Clock,
                 catalog: Callable[[], Iterable[ServerDocument]]):
        self.store = store
        self.settings = settings
        self.secrets = secrets
        self.activity = activity
        self.clock = clock
        self.catalog = catalog

    @property
    def redirect_uri(self) -> str:
        return self.settings.base_url + CALLBACK_PATH

    # --- the tools ---------------------------------------------------------------------------

    def tools(self) -> list[SharedTool]:
        """Catalog entries that act per user and say how their users sign in."""
        return [SharedTool(document, document.berth.oauth) for document in self.catalog()
                if document.berth.per_user and document.berth.oauth is not None]

    def tool(self, tool_id: str) -> SharedTool:
        found = next((tool for tool in self.tools() if tool.id == tool_id), None)
        if found is None:
            raise NotFound(f"no shared tool {tool_id}: a shared tool is a catalog entry whose users each "
                           "connect their own account")
        return found

    def connections(self, principal: Principal, user_id: str) -> list[Connection]:
        shared = self.store.shared_tools
        clients = {client.tool_id: client for client in shared.clients(principal.workspace_id)}
        grants = {grant.tool_id: grant for grant in shared.grants_of(principal.workspace_id, user_id)}
        return [Connection(tool, clients.get(tool.id), grants.get(tool.id)) for tool in self.tools()]

    def connection(self, principal: Principal, user_id: str, tool_id: str) -> Connection:
        tool, shared = self.tool(tool_id), self.store.shared_tools
        return Connection(tool, shared.client(principal.workspace_id, tool_id),
                          shared.grant(principal.workspace_id, user_id, tool_id))

    # --- the workspace's client registration ----------------------------------------------------

    def register_client(self, principal: Principal, tool_id: str, *, client_id: str, client_secret: str,
                        provider: dict[str, Any]) -> OAuthClient:
        """Set (or replace) the workspace's OAuth client for a tool; Unprocessable when the
        provider it makes with the catalog's is not usable."""
        tool = self.tool(tool_id)
        client = OAuthClient(workspace_id=principal.workspace_id, tool_id=tool_id, client_id=client_id,
                             client_secret="", secret_hint=secret_hint(client_secret), provider=provider,
                             updated_at=self.clock.iso(), updated_by=principal.subject_id)
        try:
            provider_settings(tool.oauth, client, client_secret)
        except ValidationError as invalid:
            problems = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'provider'}: {error['msg']}"
                                 for error in invalid.errors())
            raise Unprocessable(f"not a usable provider for {tool_id}: {problems}") from invalid
        sealed = self.secrets.seal(client_secret, kind=CLIENT_SECRET, workspace_id=principal.workspace_id)
        client = replace(client, client_secret=sealed)
        audit = self.activity.audit_write(principal.workspace_id, "shared_tool.client", actor=principal.subject_id,
                                          target=tool_id, detail={"client_id": client_id})
        self.store.table.transact([self.store.shared_tools.put_client(client), audit])
        self.activity.logged("shared_tool.client", principal.subject_id, tool_id)
        return client

    def remove_client(self, principal: Principal, tool_id: str) -> None:
        self.tool(tool_id)
        if not self.store.shared_tools.remove_client(principal.workspace_id, tool_id):
            raise NotFound(f"no OAuth client is registered for {tool_id}")
        self.activity.audit(principal.workspace_id, "shared_tool.client.remove", actor=principal.subject_id,
                            target=tool_id)

    def _provider(self, workspace_id: str, tool: SharedTool) -> ProviderSettings:
        client = self.store.shared_tools.client(workspace_id, tool.id)
        if client is None:
            raise Conflict(f"{tool.id} has no OAuth client in this workspace: an admin registers one with "
                           f"PUT /api/shared-tools/{tool.id}/oauth/client")
        secret = self.secrets.open(client.client_secret, kind=CLIENT_SECRET, workspace_id=workspace_id)
        return provider_settings(tool.oauth, client, secret)

    # --- signing in ------------------------------------------------------------------------------

    def begin(self, principal: Principal, user_id: str, tool_id: str) -> PendingAuthorization:
        """A sign-in link for `user_id`: its state (single use, short-lived) is stored under its
        digest, bound to the workspace, the user and the tool, with the PKCE verifier sealed."""
        tool = self.tool(tool_id)
        provider = self._provider(principal.workspace_id, tool)
        now = self.clock.now()
        pending = begin_authorization(provider, self.redirect_uri, now=now,
                                      ttl_seconds=self.settings.oauth_state_ttl_seconds)
        sealed = self.secrets.seal({"code_verifier": pending.code_verifier, "nonce": pending.nonce},
                                   kind=STATE_SECRETS, workspace_id=principal.workspace_id)
        self.store.shared_tools.add_pending(PendingSignIn(
            state_digest=hash_secret(pending.state), workspace_id=principal.workspace_id, user_id=user_id,
            tool_id=tool_id, secrets=sealed, redirect_uri=pending.redirect_uri, expires_at=pending.expires_at,
            created_at=self.clock.iso(now), expires_epoch=int(pending.expires_at) + PENDING_KEPT_SECONDS))
        log_event(logger, "shared tool sign-in begun", tool=tool_id, user=user_id)
        return pending

    async def complete(self, *, state: str, code: str | None, error: str | None,
                       error_description: str | None) -> Grant:
        """Finish the sign-in `state` names (whatever the outcome, the state is spent): exchange the
        code and store the tokens for the user it was made for. OAuthError saying why not."""
        pending = await to_thread.run_sync(self.store.shared_tools.take_pending, hash_secret(state))
        if pending is None:
            raise StateUnknown()
        try:
            return await self._connect(pending, state=state, code=code, error=error,
                                       error_description=error_description)
        except OAuthError as failed:
            await to_thread.run_sync(self._audit_failure, pending, failed)
            raise

    def _audit_failure(self, pending: PendingSignIn, failed: OAuthError) -> None:
        self.activity.audit(pending.workspace_id, "shared_tool.connect", actor=pending.user_id,
                            target=pending.tool_id, outcome="denied" if failed.status == 403 else "failed",
                            detail={"reason": failed.reason})

    async def _connect(self, pending: PendingSignIn, *, state: str, code: str | None, error: str | None,
                       error_description: str | None) -> Grant:
        tool = self.tool(pending.tool_id)
        workspace_id = pending.workspace_id
        provider, secrets = await to_thread.run_sync(lambda: (
            self._provider(workspace_id, tool),
            self.secrets.open(pending.secrets, kind=STATE_SECRETS, workspace_id=workspace_id)))
        authorization = PendingAuthorization(state=state, code_verifier=secrets["code_verifier"],
                                             nonce=secrets["nonce"], redirect_uri=pending.redirect_uri,
                                             expires_at=pending.expires_at, authorization_url="")
        tokens = await complete_authorization(provider, authorization, state=state, code=code, error=error,
                                              error_description=error_description, now=self.clock.now())
        return await to_thread.run_sync(self._store_grant, pending, tokens)

    def _store_grant(self, pending: PendingSignIn, tokens: TokenSet) -> Grant:
        shared, workspace_id = self.store.shared_tools, pending.workspace_id
        earlier = shared.grant(workspace_id, pending.user_id, pending.tool_id)
        email = tokens.id_claims.get("email")
        grant = Grant(workspace_id=workspace_id, user_id=pending.user_id, tool_id=pending.tool_id,
                      tokens=self._seal_tokens(workspace_id, tokens), scopes=list(tokens.scopes),
                      expires_at=tokens.expires_at, refreshable=bool(tokens.refresh_token),
                      email=email if isinstance(email, str) else None,
                      email_source="id_token" if isinstance(email, str) else None, connected_at=self.clock.iso(),
                      version=earlier.version + 1 if earlier else 1)
        audit = self.activity.audit_write(workspace_id, "shared_tool.connect", actor=pending.user_id,
                                          target=pending.tool_id, detail={"scopes": grant.scopes})
        self.store.table.transact([shared.put_grant(grant), audit])
        self.activity.logged("shared_tool.connect", pending.user_id, pending.tool_id)
        return grant

    # --- using a grant -------------------------------------------------------------------------

    def _grant(self, workspace_id: str, user_id: str, tool_id: str) -> Grant:
        grant = self.store.shared_tools.grant(workspace_id, user_id, tool_id)
        if grant is None:
            raise NotFound(f"user {user_id} has not connected {tool_id}: start with "
                           f"POST /api/shared-tools/{tool_id}/oauth/state")
        return grant

    async def access(self, workspace_id: str, user_id: str, tool_id: str) -> tuple[Grant, TokenSet]:
        """The user's grant with tokens good for two minutes more, refreshed (and stored) first
        when they are not. InvalidGrant when the provider no longer honours it."""
        tool = self.tool(tool_id)
        grant = await to_thread.run_sync(self._grant, workspace_id, user_id, tool_id)
        tokens = await to_thread.run_sync(self._open_tokens, grant)
        now = self.clock.now()
        provider = await to_thread.run_sync(self._provider, workspace_id, tool)
        try:
            refreshed = await fresh(provider, tokens, now=now)
        except InvalidGrant:
            # With rotating refresh tokens, a request that lost the race to refresh holds a spent
            # one: the winner's tokens are in the table.
            stored = await to_thread.run_sync(self._grant, workspace_id, user_id, tool_id)
            if stored.version == grant.version:
                raise
            return stored, await to_thread.run_sync(self._open_tokens, stored)
        if refreshed is tokens:
            return grant, tokens
        updated = await to_thread.run_sync(lambda: self.store.shared_tools.refreshed(
            grant, tokens=self._seal_tokens(workspace_id, refreshed), scopes=list(refreshed.scopes),
            expires_at=refreshed.expires_at, refreshable=bool(refreshed.refresh_token),
            refreshed_at=self.clock.iso(now)))
        if updated is None:  # another request stored its refresh first: both are valid, keep one
            stored = await to_thread.run_sync(self._grant, workspace_id, user_id, tool_id)
            return stored, await to_thread.run_sync(self._open_tokens, stored)
        log_event(logger, "shared tool grant refreshed", tool=tool_id, user=user_id)
        return updated, refreshed

    async def email(self, principal: Principal, user_id: str, tool_id: str) -> tuple[str, EmailSource]:
        """The address the user's grant belongs to, and where it came from (`id_token`, verified
        at sign-in, or `userinfo`, asked once with the user's own token and then kept)."""
        grant = await to_thread.run_sync(self._grant, principal.workspace_id, user_id, tool_id)
        if grant.email:
            return grant.email, "userinfo" if grant.email_source == "userinfo" else "id_token"
        grant, tokens = await self.access(principal.workspace_id, user_id, tool_id)
        provider = await to_thread.run_sync(self._provider, principal.workspace_id, self.tool(tool_id))
        address = await user_email(provider, tokens)
        await to_thread.run_sync(self.store.shared_tools.record_email, grant, address, "userinfo")
        return address, "userinfo"

    async def disconnect(self, principal: Principal, user_id: str, tool_id: str) -> Disconnected:
        """Forget the user's grant; first ask the provider to revoke it, where it can."""
        tool = self.tool(tool_id)
        grant = await to_thread.run_sync(self._grant, principal.workspace_id, user_id, tool_id)
        tokens = await to_thread.run_sync(self._open_tokens, grant)
        try:
            provider = await to_thread.run_sync(self._provider, principal.workspace_id, tool)
            if provider.revocation_endpoint:
                await revoke(provider, tokens)
                outcome = Disconnected(True, "the provider revoked the grant")
            else:
                outcome = Disconnected(False, "the provider offers no revocation; revoke berth's access in your "
                                              "account settings there")
        except (OAuthError, Conflict) as failed:  # forget it anyway: the user asked berth to
            outcome = Disconnected(False, f"the provider did not revoke it: {failed.message}")
        audit = self.activity.audit_write(principal.workspace_id, "shared_tool.disconnect",
                                          actor=principal.subject_id, target=tool_id,
                                          detail={"user": user_id, "revoked": outcome.revoked_at_provider})
        await to_thread.run_sync(self.store.table.transact, [self.store.shared_tools.remove_grant(grant), audit])
        return outcome

    # --- sealing ---------------------------------------------------------------------------------

    def _seal_tokens(self, workspace_id: str, tokens: TokenSet) -> str:
        return self.secrets.seal({
            "access_token": tokens.access_token, "token_type": tokens.token_type,
            "refresh_token": tokens.refresh_token, "expires_at": tokens.expires_at, "scopes": list(tokens.scopes),
            "id_claims": dict(tokens.id_claims),
        }, kind=GRANT_TOKENS, workspace_id=workspace_id)

    def _open_tokens(self, grant: Grant) -> TokenSet:
        opened = self.secrets.open(grant.tokens, kind=GRANT_TOKENS, workspace_id=grant.workspace_id)
        return TokenSet(access_token=opened["access_token"], token_type=opened["token_type"],
                        refresh_token=opened["refresh_token"], expires_at=opened["expires_at"],
                        scopes=tuple(opened["scopes"]), id_claims=opened["id_claims"])
