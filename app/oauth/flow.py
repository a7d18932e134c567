"""The authorization-code flow with PKCE, as steps the API runs between its own routes.

1. `begin_authorization` makes a `PendingAuthorization` (state, PKCE verifier, nonce, expiry) and
   the provider's authorization URL. The caller stores it under its state, single use.
2. The provider sends the user back with `code` and `state` (or `error`); the caller takes the
   pending authorization stored under that state (None when there is none any more) and passes it
   to `complete_authorization`, which checks it and exchanges the code for a `TokenSet`.
3. `fresh` refreshes a `TokenSet` shortly before it expires; `user_email` says whose grant it is;
   `revoke` asks the provider to forget it.

authlib's httpx client does the protocol (authorization URL, token requests, client
authentication); joserfc verifies id tokens. Every provider failure becomes an `OAuthError`.
Time comes in as `now` (epoch seconds, from the caller's `Clock`).
"""

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.httpx_client import OAuthError as AuthlibOAuthError
from httpx2 import HTTPError, HTTPStatusError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.oauth.errors import (
    AccessDenied,
    IdTokenInvalid,
    InvalidGrant,
    ProviderError,
    ProviderUnreachable,
    StateExpired,
    StateMismatch,
    StateUnknown,
)
from app.oauth.provider import ProviderSettings

PENDING_TTL_SECONDS = 600  # how long a sign-in link works
REFRESH_MARGIN_SECONDS = 120  # refresh this long before the access token expires
ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")


@dataclass(frozen=True)
class PendingAuthorization:
    """One sign-in in progress: what the callback needs to finish it, and until when."""

    state: str
    code_verifier: str
    nonce: str
    redirect_uri: str
    expires_at: float
    authorization_url: str


@dataclass(frozen=True)
class TokenSet:
    """A grant's tokens. `expires_at` is epoch seconds (None: the provider gave no lifetime)."""

    access_token: str
    token_type: str
    refresh_token: str | None
    expires_at: float | None
    scopes: tuple[str, ...]
    id_token: str | None = None
    # The claims of `id_token`, set only when it verified against the provider's keys.
    id_claims: Mapping[str, Any] = field(default_factory=dict)

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at - seconds


def begin_authorization(
    provider: ProviderSettings, redirect_uri: str, *, now: float, ttl_seconds: float = PENDING_TTL_SECONDS
) -> PendingAuthorization:
    state, code_verifier, nonce = (secrets.token_urlsafe(32) for _ in range(3))
    client = _client(provider, redirect_uri=redirect_uri)
    url, _ = client.create_authorization_url(provider.authorization_endpoint, state=state,
                                             code_verifier=code_verifier, nonce=nonce,
                                             **provider.extra_authorize_params)
    return PendingAuthorization(state=state, code_verifier=code_verifier, nonce=nonce, redirect_uri=redirect_uri,
                                expires_at=now + ttl_seconds, authorization_url=url)


async def complete_authorization(
    provider: ProviderSettings,
    pending: PendingAuthorization | None,
    *,
    state: str,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
    now: float,
) -> TokenSet:
    """Check the callback against the sign-in it claims to finish, then exchange its code."""
    if pending is None:
        raise StateUnknown()
    if not secrets.compare_digest(pending.state.encode(), state.encode()):
        raise StateMismatch()
    if now >= pending.expires_at:
        raise StateExpired()
    if error is not None:
        raise _provider_error(error, error_description)
    if not code:
        raise ProviderError("the provider sent the user back without a code or an error")
    async with _session(provider, redirect_uri=pending.redirect_uri) as client:
        response = await client.fetch_token(provider.token_endpoint, grant_type="authorization_code", code=code,
                                            code_verifier=pending.code_verifier)
    tokens = _token_set(response, now, previous=None)
    if tokens.id_token and provider.jwks_uri:
        tokens = replace(tokens, id_claims=await _verified_claims(provider, tokens.id_token, pending.nonce, now))
    return tokens


async def refresh(provider: ProviderSettings, tokens: TokenSet, *, now: float) -> TokenSet:
    """New tokens for `tokens` (the refresh token rotates when the provider rotates it)."""
    if not tokens.refresh_token:
        raise InvalidGrant("the provider gave no refresh token for this grant; connect the account again")
    async with _session(provider) as client:
        response = await client.refresh_token(provider.token_endpoint, refresh_token=tokens.refresh_token)
    return _token_set(response, now, previous=tokens)


async def fresh(
    provider: ProviderSettings,
    tokens: TokenSet,
    *,
    now: float,
    margin_seconds: float = REFRESH_MARGIN_SECONDS,
) -> TokenSet:
    """`tokens` while they are good for `margin_seconds` more, else refreshed ones (to be stored)."""
    return await refresh(provider, tokens, now=now) if tokens.expires_within(margin_seconds, now) else tokens


async def user_email(provider: ProviderSettings, tokens: TokenSet) -> str:
    """The grant's user: the verified id token's email, else the userinfo endpoint's."""
    email = tokens.id_claims.get("email")
    if not email:
        if not provider.userinfo_endpoint:
            raise ProviderError("the provider offers neither a verifiable id token nor a userinfo endpoint")
        async with _session(provider, token=tokens) as client:
            response = await client.get(provider.userinfo_endpoint)
        if response.status_code in (401, 403):
            raise InvalidGrant("the provider refused the access token for userinfo")
        email = _json(response).get("email")
    if not isinstance(email, str) or "@" not in email:
        raise ProviderError("the provider did not say which email address the grant belongs to")
    return email


async def revoke(provider: ProviderSettings, tokens: TokenSet) -> None:
    """Ask the provider to forget the grant (RFC 7009), when it offers a revocation endpoint."""
    if not provider.revocation_endpoint:
        return
    token, hint = (tokens.refresh_token, "refresh_token") if tokens.refresh_token else (tokens.access_token,
                                                                                         "access_token")
    async with _session(provider) as client:
        response = await client.revoke_token(provider.revocation_endpoint, token=token, token_type_hint=hint)
    if response.status_code >= 400:
        raise ProviderError(f"the provider refused the revocation (HTTP {response.status_code})")


# --- the protocol, through authlib --------------------------------------------------------------


def _client(provider: ProviderSettings, **options: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=provider.client_secret.get_secret_value(),
        token_endpoint_auth_method=provider.token_endpoint_auth_method,
        revocation_endpoint_auth_method=provider.token_endpoint_auth_method,
        scope=provider.scope or None,
        code_challenge_method="S256",
        timeout=provider.timeout_seconds,
        **options,
    )


@asynccontextmanager
async def _session(provider: ProviderSettings, token: TokenSet | None = None, **options: Any
                   ) -> AsyncIterator[AsyncOAuth2Client]:
    """A client for a few requests; provider failures come out as OAuthErrors."""
    if token is not None:
        options["token"] = {"access_token": token.access_token, "token_type": token.token_type}
    try:
        async with _client(provider, **options) as client:
            yield client
    except AuthlibOAuthError as refused:
        raise _provider_error(refused.error, refused.description) from refused
    except HTTPStatusError as failed:
        raise ProviderUnreachable(f"the provider failed (HTTP {failed.response.status_code}); try again") from failed
    except HTTPError as failed:
        raise ProviderUnreachable(f"the provider could not be reached: {type(failed).__name__}") from failed
    except ValueError as garbled:  # a token endpoint that answered something other than a JSON object
        raise ProviderError(f"the provider's answer was not understood: {garbled}") from garbled


def _provider_error(error: str | None, description: str | None) -> ProviderError | AccessDenied | InvalidGrant:
    detail = f" ({description})" if description else ""
    if error == "access_denied":
        return AccessDenied(f"access was not granted at the provider{detail}")
    if error == "invalid_grant":
        return InvalidGrant(f"the provider no longer accepts this grant{detail}; connect the account again")
    return ProviderError(f"the provider answered {error or 'an error'}{detail}")


def _token_set(response: Mapping[str, Any], now: float, previous: TokenSet | None) -> TokenSet:
    access_token = response.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderError("the provider's token answer has no access_token")
    expires_in = response.get("expires_in")
    scope = response.get("scope")
    return TokenSet(
        access_token=access_token,
        token_type=str(response.get("token_type") or "Bearer"),
        # A refresh answer without a refresh token leaves the old one in force (RFC 6749 §6).
        refresh_token=response.get("refresh_token") or (previous.refresh_token if previous else None),
        expires_at=now + float(expires_in) if expires_in is not None else None,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (previous.scopes if previous else ()),
        id_token=response.get("id_token"),
        id_claims=previous.id_claims if previous and not response.get("id_token") else {},
    )


async def _verified_claims(provider: ProviderSettings, id_token: str, nonce: str, now: float) -> dict[str, Any]:
    assert provider.jwks_uri is not None and provider.issuer is not None
    async with _session(provider) as client:
        response = await client.request("GET", provider.jwks_uri, withhold_token=True)
    try:
        keys = KeySet.import_key_set(_json(response))  # type: ignore[arg-type]
        claims = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS)).claims
        jwt.JWTClaimsRegistry(
            now=int(now), leeway=60,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, ValueError) as bad:
        raise IdTokenInvalid(f"the provider's id token did not verify: {bad}") from bad
    return dict(claims)


def _json(response: Any) -> dict[str, Any]:
    if response.status_code >= 500:
        raise ProviderUnreachable(f"the provider failed (HTTP {response.status_code}); try again")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        raise ProviderError(f"the provider answered HTTP {response.status_code} without the expected JSON")
    return body
