"""Workspaces, their users, sessions and API keys; and the credentials every bearer secret maps to."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

CredentialKind = Literal["session", "api_key", "runtime", "join", "reset", "verify"]
# Long-lived credentials presented on every request (the others are spent once or a few times).
BEARER_KINDS: tuple[CredentialKind, ...] = ("session", "api_key", "runtime")
# An operator grant or revocation made out of band (`berth admin grant-operator|revoke-operator`,
# with AWS credentials); it outranks BERTH_OPERATOR_EMAILS either way.
OperatorGrant = Literal["granted", "revoked"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Workspace:
    workspace_id: str
    name: str
    slug: str
    owner_id: str | None = None
    created_at: str | None = None
    open_jobs: int = 0  # unfinished jobs, counted in the jobs' own transactions
    matrixshell_job_id: str | None = None
    matrixshell_installed_at: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    user_id: str
    workspace_id: str
    name: str
    email: str  # lower case
    role: str
    password_hash: str
    email_verified: bool = False
    created_at: str | None = None
    operator_grant: OperatorGrant | None = None


def has_operator_rights(user: User, operator_emails: Iterable[str]) -> bool:
    """Whether `user` is the platform operator now: granted (or revoked) out of band, else by a
    *verified* address among `operator_emails`. Anyone can sign up first with an address, so an
    address nobody has proven confers nothing."""
    if user.operator_grant is not None:
        return user.operator_grant == "granted"
    return user.email_verified and user.email in {address.lower() for address in operator_emails}


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A signed-in session, listed under its user so that all of them can be ended at once."""

    session_id: str
    workspace_id: str
    user_id: str
    digest: str  # of its secret: the credential to delete with it
    expires_epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    key_id: str
    workspace_id: str
    name: str
    tier: str
    prefix: str  # the non-secret start of the key, shown in listings
    digest: str
    created_at: str
    created_by: str = ""
    expires_at: str | None = None
    revoked_at: str | None = None
    # Whether its owner had proven their address when it was minted; a password reset revokes the
    # keys minted before (whoever signed up with the address may have made them).
    owner_verified: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """What a bearer secret stands for, found by the secret's SHA-256 digest."""

    digest: str
    kind: CredentialKind
    workspace_id: str
    subject_id: str  # user, API key, runtime or join-token id
    tier: str = ""
    expires_epoch: int | None = None
    uses_left: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        return self.expires_epoch is not None and self.expires_epoch <= now
