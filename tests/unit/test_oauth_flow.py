"""The OAuth 2 client logic (app/oauth) against a real provider on loopback (tests/support/oauth_server.py).

The test plays the browser (it follows the authorization URL and reads the redirect) and the store
(a dict of pending authorizations, taken once).
"""

import base64
import hashlib
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.local.stack import free_port
from app.oauth.errors import (
    AccessDenied,
    IdTokenInvalid,
    InvalidGrant,
    ProviderUnreachable,
    StateExpired,
    StateMismatch,
    StateUnknown,
)
from app.oauth.flow import (
    PendingAuthorization,
    TokenSet,
    begin_authorization,
    complete_authorization,
    fresh,
    refresh,
    revoke,
    user_email,
)
from app.oauth.provider import ProviderSettings
from tests.support.oauth_server import User, running_oauth_server

pytestmark = pytest.mark.anyio
REDIRECT_URI = "http://127.0.0.1:7500/api/auth/callback"


@pytest.fixture
def provider():
    with running_oauth_server() as running:
        yield running


@pytest.fixture
def settings(provider):
    return provider.settings(REDIRECT_URI)


def consent(pending: PendingAuthorization) -> dict[str, str]:
    """What the browser brings back to the callback: the redirect's query."""
    answer = httpx.get(pending.authorization_url, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def begin(settings: ProviderSettings) -> PendingAuthorization:
    return begin_authorization(settings, REDIRECT_URI, now=time.time())


async def sign_in(settings: ProviderSettings) -> TokenSet:
    pending = begin(settings)
    return await complete_authorization(settings, pending, **consent(pending), now=time.time())


async def test_a_sign_in_gives_tokens_and_the_email_from_a_verified_id_token(provider, settings):
    before = time.time()
    tokens = await sign_in(settings)
    assert tokens.access_token and tokens.refresh_token and tokens.token_type.lower() == "bearer"
    assert tokens.scopes == ("openid", "email", "calendar.read")
    assert before + 3600 <= tokens.expires_at <= time.time() + 3600
    assert tokens.id_claims["email"] == "ada@example.com" and tokens.id_claims["iss"] == provider.base_url
    assert await user_email(settings, tokens) == "ada@example.com"


async def test_without_provider_keys_the_email_comes_from_userinfo(provider):
    settings = provider.settings(REDIRECT_URI, issuer=None, jwks_uri=None)
    provider.signed_in = provider.users["bob@example.com"]
    tokens = await sign_in(settings)
    assert tokens.id_token and tokens.id_claims == {}  # not trusted without the provider's keys
    assert await user_email(settings, tokens) == "bob@example.com"


async def test_each_grant_belongs_to_the_user_who_consented(provider, settings):
    ada = await sign_in(settings)
    provider.signed_in = provider.users["bob@example.com"]
    bob = await sign_in(settings)
    assert await user_email(settings, ada) == "ada@example.com"
    assert await user_email(settings, bob) == "bob@example.com"
    assert ada.access_token != bob.access_token and ada.refresh_token != bob.refresh_token


async def test_the_authorization_url_carries_pkce_s256_state_and_nonce(settings):
    pending = begin_authorization(settings, REDIRECT_URI, now=1_000.0, ttl_seconds=300)
    query = {key: values[0] for key, values in parse_qs(urlsplit(pending.authorization_url).query).items()}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(pending.code_verifier.encode()).digest()).rstrip(b"=")
    assert query["code_challenge"] == challenge.decode() and query["code_challenge_method"] == "S256"
    assert query["state"] == pending.state and query["nonce"] == pending.nonce
    assert query["response_type"] == "code" and query["client_id"] == settings.client_id
    assert query["redirect_uri"] == REDIRECT_URI and query["scope"] == "openid email calendar.read"
    assert pending.expires_at == 1_300.0
    assert len({pending.state, pending.code_verifier, pending.nonce}) == 3


async def test_the_provider_requires_pkce(settings):
    pending = begin(settings)
    without_challenge = pending.authorization_url.replace("code_challenge=", "code_challenge_dropped=")
    answer = httpx.get(without_challenge, follow_redirects=False)
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_request"]


async def test_a_state_is_used_once(provider, settings):
    store: dict[str, PendingAuthorization] = {}
    pending = begin(settings)
    store[pending.state] = pending
    callback = consent(pending)
    await complete_authorization(settings, store.pop(callback["state"], None), **callback, now=time.time())
    with pytest.raises(StateUnknown, match="unknown or was already used"):
        await complete_authorization(settings, store.pop(callback["state"], None), **callback, now=time.time())
    with pytest.raises(InvalidGrant):  # and the provider refuses the code a second time anyway
        await complete_authorization(settings, pending, **callback, now=time.time())


async def test_a_callback_for_another_sign_in_is_refused_before_any_token_request(provider, settings):
    mine, theirs = begin(settings), begin(settings)
    callback = consent(theirs)
    with pytest.raises(StateMismatch):
        await complete_authorization(settings, mine, **callback, now=time.time())
    assert provider.tokens == []


async def test_an_expired_sign_in_is_refused(provider, settings):
    pending = begin_authorization(settings, REDIRECT_URI, now=1_000.0)
    with pytest.raises(StateExpired, match="expired"):
        await complete_authorization(settings, pending, **consent(pending), now=1_600.0)
    assert provider.tokens == []


async def test_a_declined_consent_is_access_denied(provider, settings):
    provider.deny_authorization = True
    pending = begin(settings)
    callback = consent(pending)
    assert callback["error"] == "access_denied" and callback["state"] == pending.state
    with pytest.raises(AccessDenied, match="access was not granted") as denied:
        await complete_authorization(settings, pending, **callback, now=time.time())
    assert denied.value.status == 403 and denied.value.reason == "access_denied"


async def test_a_refused_code_exchange_is_invalid_grant(provider, settings):
    pending = begin(settings)
    callback = consent(pending)
    provider.refuse_token_requests = True
    with pytest.raises(InvalidGrant, match="connect the account again"):
        await complete_authorization(settings, pending, **callback, now=time.time())


async def test_tokens_refresh_before_they_expire_and_the_refresh_token_rotates(provider, settings):
    provider.access_token_seconds = 1
    tokens = await sign_in(settings)
    now = time.time()
    assert await fresh(settings, tokens, now=now - 600) is tokens  # still good well before expiry
    time.sleep(1.1)  # let the provider's access token lapse
    with pytest.raises(InvalidGrant):
        await user_email(settings, replace(tokens, id_claims={}))  # asks userinfo with the lapsed token
    provider.access_token_seconds = 3600
    renewed = await fresh(settings, tokens, now=time.time())
    assert renewed.access_token != tokens.access_token and renewed.refresh_token != tokens.refresh_token
    assert renewed.expires_at > time.time() + 3000 and renewed.scopes == tokens.scopes
    assert renewed.id_claims == tokens.id_claims  # a refresh without an id token keeps who it was
    assert await user_email(settings, replace(renewed, id_claims={})) == "ada@example.com"
    with pytest.raises(InvalidGrant):  # the old refresh token was rotated out
        await refresh(settings, tokens, now=time.time())


async def test_a_revoked_grant_cannot_be_refreshed(provider, settings):
    tokens = await sign_in(settings)
    provider.revoke_grants_of("ada@example.com")
    with pytest.raises(InvalidGrant) as refused:
        await refresh(settings, tokens, now=time.time())
    assert refused.value.reason == "invalid_grant"
    again = await sign_in(settings)
    await revoke(settings, again)  # RFC 7009, as `DELETE .../oauth` would
    assert again.refresh_token not in provider.live_refresh_tokens()
    with pytest.raises(InvalidGrant):
        await refresh(settings, again, now=time.time())


async def test_an_unreachable_provider_is_reported_as_such(settings):
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = settings.model_copy(update={"token_endpoint": f"{closed}/token", "timeout_seconds": 2})
    pending = begin(unreachable)
    with pytest.raises(ProviderUnreachable, match="could not be reached") as failed:
        await complete_authorization(unreachable, pending, state=pending.state, code="any", now=time.time())
    assert failed.value.status == 502


async def test_an_id_token_must_verify_against_this_sign_in_and_the_providers_keys(provider, settings):
    pending = begin(settings)
    with pytest.raises(IdTokenInvalid, match="nonce"):
        another = replace(pending, nonce="another sign-in")
        await complete_authorization(settings, another, **consent(pending), now=time.time())
    with running_oauth_server([User("user-eve", "eve@example.com")]) as impostor:
        foreign_keys = settings.model_copy(update={"jwks_uri": f"{impostor.base_url}/jwks"})
        pending = begin(foreign_keys)
        with pytest.raises(IdTokenInvalid):
            await complete_authorization(foreign_keys, pending, **consent(pending), now=time.time())


def test_provider_settings_refuse_plain_http_off_loopback_and_keys_without_an_issuer():
    valid = {"authorization_endpoint": "https://accounts.example.com/authorize",
             "token_endpoint": "https://accounts.example.com/token", "client_id": "c", "client_secret": "s"}
    assert ProviderSettings(**valid).scope == ""
    with pytest.raises(ValueError, match="must be an https URL"):
        ProviderSettings(**{**valid, "token_endpoint": "http://accounts.example.com/token"})
    with pytest.raises(ValueError, match="jwks_uri needs issuer"):
        ProviderSettings(**valid, jwks_uri="https://accounts.example.com/jwks")
    assert "s3cr3t-value" not in repr(ProviderSettings(**{**valid, "client_secret": "s3cr3t-value"}))
