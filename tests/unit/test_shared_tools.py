"""Shared tools: per-user OAuth against a real OAuth 2 / OpenID provider on loopback
(tests/support/oauth_server.py), through berth's routes (moto in-process). The test plays the
integrating product (a workspace API key naming its users in X-User-Id) and each user's browser
(it follows the authorization URL and brings the provider's redirect to berth's callback)."""

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app import composition
from app.clock import Clock
from app.composition import Services
from tests.conftest import bearer, signup
from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET, running_oauth_server

GITHUB = "io.github.github/github-mcp-server"  # the curated per-user entry
TOOL = f"/api/shared-tools/{GITHUB}"


class MovableClock(Clock):
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock(aws_resources, monkeypatch) -> MovableClock:
    moved = MovableClock()
    monkeypatch.setattr(composition, "_current", Services(aws_resources, clock=moved))
    return moved


@pytest.fixture
def provider():
    with running_oauth_server() as running:
        yield running


@pytest.fixture
def workspace(client, clock):
    """A workspace with an admin key (the product's) and a standard one, and the provider's URL."""
    owner = signup(client)
    keys = {}
    for tier in ("admin", "standard", "read"):
        minted = client.post("/api/auth/keys/generate", headers=bearer(owner["token"]),
                             json={"name": tier, "tier": tier})
        keys[tier] = minted.json()["key"]
    return {"owner": owner, "keys": keys}


def as_user(workspace, user: str, tier: str = "standard") -> dict:
    return {"X-API-Key": workspace["keys"][tier], "X-User-Id": user}


def register(client, workspace, provider, **overrides) -> httpx.Response:
    settings = provider.settings(composition.services().shared_tools.redirect_uri)
    endpoints = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "revocation_endpoint", "issuer",
                 "jwks_uri")
    body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": list(settings.scopes),
            **{name: getattr(settings, name) for name in endpoints}, **overrides}
    return client.put(f"{TOOL}/oauth/client", headers={"X-API-Key": workspace["keys"]["admin"]},
                      json={name: value for name, value in body.items() if value is not None})


def sign_in_link(client, workspace, user: str) -> str:
    answer = client.post(f"{TOOL}/oauth/state", headers=as_user(workspace, user))
    assert answer.status_code == 201, answer.text
    assert answer.json()["user_id"] == user
    return answer.json()["authorization_url"]


def consent(link: str) -> dict[str, str]:
    """The user's browser at the provider: what it brings back to berth's callback."""
    answer = httpx.get(link, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert location.path == "/api/auth/callback"
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def connect(client, workspace, provider, user: str, email: str) -> httpx.Response:
    provider.signed_in = provider.users[email]
    return client.get("/api/auth/callback", params=consent(sign_in_link(client, workspace, user)))


def test_a_user_connects_with_pkce_and_the_grant_is_theirs_alone(client, workspace, provider):
    assert register(client, workspace, provider).status_code == 200
    page = connect(client, workspace, provider, "ada", "ada@example.com")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Connected" in page.text and "default-src 'none'" in page.headers["content-security-policy"]

    status = client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "ada")).json()
    assert status["connected"] is True and status["expired"] is False and status["refreshable"] is True
    assert status["scopes"] == ["openid", "email", "calendar.read"] and status["connected_at"]
    email = client.get(f"{TOOL}/oauth/user-email", headers=as_user(workspace, "ada")).json()
    assert email == {"success": True, "tool_id": GITHUB, "user_id": "ada", "email": "ada@example.com",
                     "source": "id_token"}
    # Another user of the same workspace has connected nothing.
    other = client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "bob")).json()
    assert other["connected"] is False and other["expired"] is None
    missing = client.get(f"{TOOL}/oauth/user-email", headers=as_user(workspace, "bob"))
    assert missing.status_code == 404 and "has not connected" in missing.json()["error"]
    listed = client.get("/api/shared-tools", headers=as_user(workspace, "ada", "read")).json()["shared_tools"]
    assert [(tool["id"], tool["client_registered"], tool["connection"]["connected"]) for tool in listed] == [
        (GITHUB, True, True)]


def test_the_pkce_verifier_and_the_tokens_are_stored_sealed(client, workspace, provider):
    register(client, workspace, provider)
    link = sign_in_link(client, workspace, "ada")
    stored = str(composition.services().store.table.scan_all())
    assert "code_verifier" not in stored and CLIENT_SECRET not in stored
    assert parse_qs(urlsplit(link).query)["code_challenge_method"] == ["S256"]
    client.get("/api/auth/callback", params=consent(link))
    stored = str(composition.services().store.table.scan_all())
    assert not [token for token in provider.tokens if token.access_token in stored or token.refresh_token in stored]


def test_a_sign_in_link_works_once(client, workspace, provider):
    register(client, workspace, provider)
    returned = consent(sign_in_link(client, workspace, "ada"))
    assert client.get("/api/auth/callback", params=returned).status_code == 200
    again = client.get("/api/auth/callback", params=returned)
    assert again.status_code == 400 and "unknown or was already used" in again.text and "state_unknown" in again.text


def test_an_expired_sign_in_link_is_refused_and_says_so(client, workspace, provider, clock):
    register(client, workspace, provider)
    returned = consent(sign_in_link(client, workspace, "ada"))
    clock.offset = composition.services().settings.oauth_state_ttl_seconds + 1
    page = client.get("/api/auth/callback", params=returned)
    assert page.status_code == 400 and "expired" in page.text
    clock.offset = 0
    assert client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "ada")).json()["connected"] is False


def test_a_state_made_up_or_missing_is_refused(client, workspace, provider):
    register(client, workspace, provider)
    assert client.get("/api/auth/callback", params={"state": "forged", "code": "x"}).status_code == 400
    assert client.get("/api/auth/callback").status_code == 400


def test_the_provider_refusing_or_failing_ends_the_sign_in_with_the_reason(client, workspace, provider):
    register(client, workspace, provider)
    provider.deny_authorization = True
    denied = client.get("/api/auth/callback", params=consent(sign_in_link(client, workspace, "ada")))
    assert denied.status_code == 403 and "access_denied" in denied.text
    provider.deny_authorization = False
    provider.refuse_token_requests = True
    refused = client.get("/api/auth/callback", params=consent(sign_in_link(client, workspace, "ada")))
    assert refused.status_code == 400 and "invalid_grant" in refused.text
    assert client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "ada")).json()["connected"] is False
    audit = composition.services().activity.audit_page(workspace["owner"]["user"]["workspace_id"], limit=20,
                                                        cursor=None).items
    assert [(entry.action, entry.outcome) for entry in audit if entry.action == "shared_tool.connect"] == [
        ("shared_tool.connect", "failed"), ("shared_tool.connect", "denied")]


def test_a_session_acts_for_its_own_user_only(client, workspace, provider):
    register(client, workspace, provider)
    token, user_id = workspace["owner"]["token"], workspace["owner"]["user"]["id"]
    own = client.post(f"{TOOL}/oauth/state", headers=bearer(token))
    assert own.status_code == 201 and own.json()["user_id"] == user_id
    other = client.post(f"{TOOL}/oauth/state", headers={**bearer(token), "X-User-Id": "bob"})
    assert other.status_code == 403 and "another user" in other.json()["error"]
    odd = client.get(f"{TOOL}/oauth/status", headers={"X-API-Key": workspace["keys"]["read"], "X-User-Id": "a b"})
    assert odd.status_code == 422 and "x-user-id" in odd.json()["error"].lower()


def test_refresh_before_expiry_rotates_the_users_tokens_and_no_one_elses(client, workspace, provider, clock):
    # Without the provider's keys, no id token is verified: the email comes from userinfo, with
    # the user's own access token, refreshed first when it is about to expire.
    register(client, workspace, provider, issuer=None, jwks_uri=None)
    provider.access_token_seconds = 600
    connect(client, workspace, provider, "ada", "ada@example.com")
    connect(client, workspace, provider, "bob", "bob@example.com")
    first = client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "ada")).json()
    live_before = provider.live_refresh_tokens()

    clock.offset = 600 - 60  # within the two minutes before expiry
    ada = client.get(f"{TOOL}/oauth/user-email", headers=as_user(workspace, "ada"))
    assert ada.json()["email"] == "ada@example.com" and ada.json()["source"] == "userinfo"
    after = client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "ada")).json()
    assert after["refreshed_at"] and after["expires_at"] > first["expires_at"]
    live_after = provider.live_refresh_tokens()
    assert len(live_before - live_after) == 1 and len(live_after - live_before) == 1  # ada's rotated, bob's kept
    bob = client.get(f"{TOOL}/oauth/user-email", headers=as_user(workspace, "bob")).json()
    assert bob["email"] == "bob@example.com"
    assert client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "bob")).json()["refreshed_at"]


def test_a_grant_the_provider_no_longer_honours_says_connect_again(client, workspace, provider, clock):
    register(client, workspace, provider, issuer=None, jwks_uri=None)
    provider.access_token_seconds = 60
    connect(client, workspace, provider, "ada", "ada@example.com")
    provider.revoke_grants_of("ada@example.com")
    answer = client.get(f"{TOOL}/oauth/user-email", headers=as_user(workspace, "ada"))
    assert answer.status_code == 400 and "connect the account again" in answer.json()["error"]


def test_disconnecting_revokes_at_the_provider_and_forgets_only_that_user(client, workspace, provider):
    register(client, workspace, provider)
    connect(client, workspace, provider, "ada", "ada@example.com")
    connect(client, workspace, provider, "bob", "bob@example.com")
    gone = client.delete(f"{TOOL}/oauth", headers=as_user(workspace, "ada"))
    assert gone.status_code == 200 and gone.json()["revoked_at_provider"] is True
    assert {token.user.email for token in provider.tokens if not token.revoked} == {"bob@example.com"}
    assert client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "ada")).json()["connected"] is False
    assert client.get(f"{TOOL}/oauth/status", headers=as_user(workspace, "bob")).json()["connected"] is True
    assert client.delete(f"{TOOL}/oauth", headers=as_user(workspace, "ada")).status_code == 404


def test_the_client_registration_is_the_admins_and_its_secret_is_never_shown(client, workspace, provider):
    refused = client.put(f"{TOOL}/oauth/client", headers={"X-API-Key": workspace["keys"]["standard"]},
                         json={"client_id": "x", "client_secret": "y"})
    assert refused.status_code == 403
    assert client.post(f"{TOOL}/oauth/state", headers=as_user(workspace, "ada")).status_code == 409
    view = register(client, workspace, provider).json()
    assert CLIENT_SECRET not in str(view) and view["secret_hint"] == f"…{CLIENT_SECRET[-4:]}"
    assert view["redirect_uri"].endswith("/api/auth/callback")
    assert view["provider"]["token_endpoint"] == f"{provider.base_url}/token"  # the registration's
    assert view["provider"]["token_endpoint_auth_method"] == "client_secret_post"  # the catalog's
    insecure = register(client, workspace, provider, token_endpoint="http://provider.example.com/token")
    assert insecure.status_code == 422 and "must be an https URL" in insecure.json()["error"]
    unknown = client.put("/api/shared-tools/io.github.nobody/nothing/oauth/client", json={"client_id": "x",
                         "client_secret": "y"}, headers={"X-API-Key": workspace["keys"]["admin"]})
    assert unknown.status_code == 404
    removed = client.delete(f"{TOOL}/oauth/client", headers={"X-API-Key": workspace["keys"]["admin"]})
    assert removed.status_code == 204
    assert client.post(f"{TOOL}/oauth/state", headers=as_user(workspace, "ada")).status_code == 409
