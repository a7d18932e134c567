"""Who is calling, once authenticated (app.services.authentication), and the key tiers."""

from dataclasses import dataclass
from enum import Enum

from app.errors import Forbidden, Unauthorized


class Tier(str, Enum):
    read = "read"
    standard = "standard"
    admin = "admin"


_TIER_RANK = {Tier.read: 0, Tier.standard: 1, Tier.admin: 2}


@dataclass(frozen=True)
class Principal:
    kind: str  # "session" | "api_key" | "runtime" (or "system" for the local stack's own calls)
    workspace_id: str
    subject_id: str  # user id, API key id or runtime id
    tier: Tier
    credential_digest: str
    user_id: str = ""
    session_id: str = ""
    # Set only by in-process callers that are the platform themselves (the local stack minting its
    # own worker's join token); a credential never carries it (app.services.trust decides on use).
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
