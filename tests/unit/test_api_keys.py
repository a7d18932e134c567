"""API keys: shown once, stored as a digest, tiers enforced, revocation immediate."""

import json
from datetime import datetime, timedelta, timezone

from app.store import keys
from tests.conftest import bearer, signup


def _mint(client, token, **body):
    response = client.post("/api/auth/keys/generate", headers=bearer(token), json={"name": "ci", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_key_is_shown_once_listed_by_prefix_and_never_stored_in_clear(client, store):
    session = signup(client)["token"]
    created = _mint(client, session, tier="standard")
    secret = created["key"]
    assert secret.startswith("bak_") and secret.startswith(created["api_key"]["prefix"])
    listing = client.get("/api/auth/keys", headers=bearer(session)).json()
    assert [k["id"] for k in listing["keys"]] == [created["api_key"]["id"]]
    assert secret not in json.dumps(listing)
    assert secret not in json.dumps(store.table.scan_all(), default=str)


def test_key_authenticates_as_bearer_and_as_x_api_key_on_both_surfaces(client):
    session = signup(client)["token"]
    secret = _mint(client, session, tier="admin")["key"]
    assert client.get("/v1/auth/me", headers={"X-API-Key": secret}).json()["auth"] == "api_key"
    assert client.get("/v1/auth/me", headers=bearer(secret)).status_code == 200
    assert client.get("/api/auth/keys", headers={"X-API-Key": secret}).status_code == 200


def test_tiers(client):
    session = signup(client)["token"]
    read = _mint(client, session, tier="read")["key"]
    standard = _mint(client, session, tier="standard")["key"]
    assert client.get("/v1/jobs", headers=bearer(read)).status_code == 200
    denied = client.post("/v1/jobs", headers=bearer(read), json={"type": "model.inspect", "payload": {"model": "a/b"}})
    assert denied.status_code == 403 and "standard-tier" in denied.json()["error"]
    assert client.post("/v1/jobs", headers=bearer(standard),
                       json={"type": "model.inspect", "payload": {"model": "a/b"}, "wait": True}).status_code == 202
    admin_only = client.post("/api/auth/keys/generate", headers=bearer(standard), json={"name": "x"})
    assert admin_only.status_code == 403 and "needs an admin-tier key" in admin_only.json()["error"]


def test_revoked_key_is_refused_at_once(client):
    session = signup(client)["token"]
    created = _mint(client, session)
    secret = created["key"]
    assert client.get("/v1/auth/me", headers=bearer(secret)).status_code == 200
    revoked = client.delete(f"/api/auth/keys/{created['api_key']['id']}", headers=bearer(session))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/v1/auth/me", headers=bearer(secret)).status_code == 401
    assert client.delete(f"/api/auth/keys/{created['api_key']['id']}", headers=bearer(session)).status_code == 200


def test_expired_key_is_refused(client, store):
    account = signup(client)
    session, workspace_id = account["token"], account["user"]["workspace_id"]
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    created = _mint(client, session, expires_at=soon.isoformat())
    assert created["api_key"]["expires_at"]
    digest = store.accounts.api_key(workspace_id, created["api_key"]["id"]).digest
    store.table.update(*keys.credential(digest), set={"expires_epoch": 1})  # time passes
    assert client.get("/v1/auth/me", headers=bearer(created["key"])).status_code == 401
    past = client.post("/api/auth/keys/generate", headers=bearer(session),
                       json={"name": "old", "expires_at": "2001-01-01T00:00:00Z"})
    assert past.status_code == 400 and "future" in past.json()["error"]


def test_keys_are_scoped_to_their_workspace(client):
    ada = signup(client)["token"]
    bob = signup(client, email="bob@example.com", name="Bob")["token"]
    ada_key = _mint(client, ada)["api_key"]["id"]
    assert client.get("/api/auth/keys", headers=bearer(bob)).json()["keys"] == []
    assert client.delete(f"/api/auth/keys/{ada_key}", headers=bearer(bob)).status_code == 404


def test_listing_paginates_with_an_opaque_cursor(client):
    session = signup(client)["token"]
    ids = [_mint(client, session, tier="read")["api_key"]["id"] for _ in range(5)]
    first = client.get("/api/auth/keys?limit=2", headers=bearer(session)).json()
    second = client.get(f"/api/auth/keys?limit=2&cursor={first['next_cursor']}", headers=bearer(session)).json()
    third = client.get(f"/api/auth/keys?limit=2&cursor={second['next_cursor']}", headers=bearer(session)).json()
    seen = [k["id"] for page in (first, second, third) for k in page["keys"]]
    assert seen == list(reversed(ids)) and third["next_cursor"] is None
    bad = client.get("/api/auth/keys?cursor=not-a-cursor", headers=bearer(session))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid pagination cursor"
