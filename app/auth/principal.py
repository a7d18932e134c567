"""Who is calling: resolved from a bearer secret in `Authorization` or `X-API-Key`."""

import time
from dataclasses import dataclass
from enum import Enum

from app.errors import Forbidden, Unauthorized
from app.ids import hash_secret
from app.logs import set_workspace
from app.store import get_store


class Tier(str, Enum):
    read = "read"
    standard = "standard"
    admin = "admin"


_TIER_RANK = {Tier.read: 0, Tier.standard: 1, Tier.admin: 2}


@dataclass(frozen=True)
class Principal:
    kind: str  # "session" | "api_key" | "runtime"
    workspace_id: str
    subject_id: str  # user id, API key id or runtime id
    tier: Tier
    credential_digest: str
    user_id: str = ""
    session_id: str = ""
    operator: bool = False

    def require(self, tier: Tier) -> None:
        if _TIER_RANK[self.tier] < _TIER_RANK[tier]:
            raise Forbidden(f"this action needs a {tier.value}-tier key; yours is {self.tier.value}")


def bearer_secret(authorization: str | None, api_key: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return None


def resolve(secret: str | None, *, kinds: tuple[str, ...]) -> Principal:
    """The principal behind a secret of one of `kinds`, or Unauthorized."""
    if not secret:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key'")
    digest = hash_secret(secret)
    credential = get_store().credentials.bearer(digest)
    if credential is None or credential.kind not in kinds:
        raise Unauthorized("invalid, expired or revoked credentials")
    if credential.expires_epoch is not None and credential.expires_epoch <= time.time():
        raise Unauthorized("credentials expired")
    set_workspace(credential.workspace_id)
    user_id = credential.subject_id if credential.kind == "session" else credential.attributes.get("user_id", "")
    return Principal(
        kind=credential.kind,
        workspace_id=credential.workspace_id,
        subject_id=credential.subject_id,
        tier=Tier(credential.tier or Tier.admin.value),
        credential_digest=digest,
        user_id=user_id,
        session_id=credential.attributes.get("session_id", ""),
        operator=bool(credential.attributes.get("operator")),
    )
