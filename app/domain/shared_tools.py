"""Shared tools: catalog entries whose server acts for each user of a workspace with that user's
own OAuth grant (`perUser`, with an `oauth` provider in the entry's berth metadata).

Three records: the workspace's OAuth client registration for a tool (its client secret sealed);
a sign-in in progress (the OAuth state, single use, short-lived, bound to one workspace, user and
tool); and a user's grant (the tokens sealed, refreshed before they expire).
"""

from dataclasses import dataclass, field
from typing import Any

# A late callback is told its sign-in link expired, not that it is unknown, for this long after.
PENDING_KEPT_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthClient:
    """A workspace's client registration with a tool's provider."""

    workspace_id: str
    tool_id: str
    client_id: str
    client_secret: str  # sealed (app.services.secrets), kind "oauth_client"
    secret_hint: str
    # What the registration sets over the catalog entry's provider (endpoints of a self-hosted
    # provider, other scopes), in ProviderSettings' field names.
    provider: dict[str, Any] = field(default_factory=dict)
    updated_at: str
    updated_by: str = ""
    version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingSignIn:
    """An OAuth state handed out and not yet used, stored under the state's digest."""

    state_digest: str
    workspace_id: str
    user_id: str
    tool_id: str
    secrets: str  # sealed {"code_verifier", "nonce"}, kind "oauth_state"
    redirect_uri: str
    expires_at: float  # the sign-in link works until then
    created_at: str
    expires_epoch: int  # the record is kept PENDING_KEPT_SECONDS longer, to say why it fails


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """One user's connection of one shared tool."""

    workspace_id: str
    user_id: str
    tool_id: str
    tokens: str  # the token set, sealed, kind "oauth_grant"
    scopes: list[str] = field(default_factory=list)
    expires_at: float | None = None  # of the access token; None: the provider gave no lifetime
    refreshable: bool = False
    email: str | None = None  # whose grant it is
    email_source: str | None = None  # id_token (verified at sign-in) or userinfo (asked once with the token)
    connected_at: str
    refreshed_at: str | None = None
    version: int = 1

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def secret_hint(value: str) -> str:
    """What a view shows of a secret: its last four characters when it is long enough that they
    give nothing away, else only that it is set."""
    return f"…{value[-4:]}" if len(value) >= 16 else "set"
