"""Who is calling: the principal behind a bearer secret (`Authorization` or `X-API-Key`)."""

from app.auth.principal import Principal, Tier
from app.clock import Clock
from app.domain.accounts import Credential, CredentialKind
from app.errors import Unauthorized
from app.ids import hash_secret
from app.logs import set_workspace
from app.store import Store


class Authenticator:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def resolve(self, secret: str | None, *, kinds: tuple[CredentialKind, ...]) -> Principal:
        """The principal behind a secret of one of `kinds`, or Unauthorized."""
        if not secret:
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key'")
        digest = hash_secret(secret)
        credential = self.store.credentials.bearer(digest)
        if credential is None or credential.kind not in kinds:
            raise Unauthorized("invalid, expired or revoked credentials")
        if credential.expired(self.clock.now()):
            raise Unauthorized("credentials expired")
        set_workspace(credential.workspace_id)
        user_id = credential.subject_id if credential.kind == "session" else credential.attributes.get("user_id", "")
        return Principal(
            kind=credential.kind,
            workspace_id=credential.workspace_id,
            subject_id=credential.subject_id,
            tier=_tier(credential),
            credential_digest=digest,
            user_id=user_id or "",
            session_id=credential.attributes.get("session_id", ""),
        )


def _tier(credential: Credential) -> Tier:
    """What the credential may do. A runtime's token acts only on the runtime routes, which ask for
    no tier (read, the least, stands for it); a user's credential names its tier, and one that does
    not (damaged, or written by something else) is refused rather than read as any tier."""
    if credential.kind == "runtime":
        return Tier.read
    try:
        return Tier(credential.tier)
    except ValueError:
        raise Unauthorized("these credentials carry no valid tier; sign in again or mint a new key") from None
