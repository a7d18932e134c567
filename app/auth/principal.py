"""Who is calling, once authenticated (app.services.authentication), and the key tiers."""

import re
from dataclasses import dataclass
from enum import Enum

from app.errors import BadRequest, Forbidden, Unauthorized

# A user of the integrating product, as it names them in `X-User-Id`: opaque to berth, but plain.
USER_ID_PATTERN = r"^[A-Za-z0-9._@:+\-]{1,128}$"
_USER_ID = re.compile(USER_ID_PATTERN)


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
            raise Forbidden(f"this action needs {_with_article(tier.value)}-tier key; yours is {self.tier.value}")

    def acting_for(self, named: str | None) -> str:
        """Whom a request acts for: a signed-in user acts for themselves (`X-User-Id`, if sent,
        must name them); a workspace API key for the user `X-User-Id` names, else its own user."""
        if named is not None and not _USER_ID.match(named):
            raise BadRequest("X-User-Id must be 1-128 letters, digits or ._@:+-")
        if self.kind == "session":
            if named and named != self.user_id:
                raise Forbidden("X-User-Id names another user than the one signed in")
            return self.user_id
        user = named or self.user_id
        if not user:
            raise BadRequest("name the user this request acts for in X-User-Id")
        return user


def _with_article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def bearer_secret(authorization: str | None, api_key: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return None
