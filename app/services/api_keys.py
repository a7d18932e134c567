"""API keys: minted with a tier and optional expiry, shown once, stored as a digest.

Where addresses must be verified, an account mints keys only once it has proven its own: a key
outlives any session, so a stranger who signed up first with someone's address must not be able
to leave one behind. Each key records whether its owner had proven the address when it was made,
and a password reset revokes those made before (app.services.accounts).
"""

from dataclasses import replace
from datetime import UTC, datetime

from app.auth.principal import Principal
from app.clock import Clock
from app.domain.accounts import ApiKey, Credential
from app.errors import BadRequest, ConditionFailed, NotFound
from app.ids import hash_secret, new_id, new_secret, secret_prefix
from app.services.activity import ActivityLog
from app.services.trust import TrustPolicy
from app.store import Store
from app.store.table import Page


class ApiKeyService:
    def __init__(self, store: Store, trust: TrustPolicy, activity: ActivityLog, clock: Clock):
        self.store = store
        self.trust = trust
        self.activity = activity
        self.clock = clock

    def generate(self, principal: Principal, name: str, tier: str, expires_at: datetime | None) -> tuple[str, ApiKey]:
        """A new key and its secret (returned this once)."""
        owner_verified = self.trust.verified(principal)
        self.trust.refuse_unverified(owner_verified, "mint API keys")
        expires_epoch = None
        if expires_at is not None:
            moment = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
            expires_epoch = int(moment.timestamp())
            if expires_epoch <= self.clock.now():
                raise BadRequest("expires_at must be in the future")
        key_id, secret = new_id("key"), new_secret("bak")
        digest = hash_secret(secret)
        key = ApiKey(key_id=key_id, workspace_id=principal.workspace_id, name=name, tier=tier,
                     prefix=secret_prefix(secret), digest=digest, created_at=self.clock.iso(),
                     created_by=principal.user_id or principal.subject_id,
                     expires_at=self.clock.iso(expires_epoch) if expires_epoch else None,
                     owner_verified=owner_verified)
        credential = Credential(digest=digest, kind="api_key", workspace_id=principal.workspace_id, subject_id=key_id,
                                tier=tier, expires_epoch=expires_epoch, attributes={"user_id": principal.user_id})
        self.store.table.transact([self.store.accounts.add_api_key(key), self.store.credentials.add(credential)])
        self.activity.audit(principal.workspace_id, "api_key.create", actor=principal.subject_id, target=key_id,
                            detail={"name": name, "tier": tier})
        return secret, key

    def page(self, principal: Principal, *, limit: int, cursor: str | None) -> Page[ApiKey]:
        return self.store.accounts.api_keys(principal.workspace_id, limit=limit, cursor=cursor)

    def revoke(self, principal: Principal, key_id: str) -> ApiKey:
        key = self.store.accounts.api_key(principal.workspace_id, key_id)
        if key is None:
            raise NotFound(f"no API key {key_id}")
        return self._revoke(key, actor=principal.subject_id)

    def revoke_unproven(self, workspace_id: str, user_id: str) -> int:
        """Revoke the keys `user_id` made before proving their address (a password reset does):
        whoever signed up with the address first may have made them. Returns how many."""
        revoked = 0
        cursor = None
        while True:
            page = self.store.accounts.api_keys(workspace_id, limit=200, cursor=cursor)
            for key in page.items:
                if key.created_by == user_id and not key.owner_verified and not key.revoked_at:
                    self._revoke(key, actor=user_id)
                    revoked += 1
            cursor = page.cursor
            if cursor is None:
                return revoked

    def _revoke(self, key: ApiKey, *, actor: str) -> ApiKey:
        if key.revoked_at:
            return key
        revoked_at = self.clock.iso()
        try:
            self.store.table.transact([self.store.accounts.revoke_api_key(key, revoked_at),
                                       self.store.credentials.remove(key.digest)])
        except ConditionFailed:
            pass  # revoked concurrently: the outcome is the same
        self.store.credentials.forget(key.digest)
        self.activity.audit(key.workspace_id, "api_key.revoke", actor=actor, target=key.key_id)
        return replace(key, revoked_at=revoked_at)
