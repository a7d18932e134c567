"""Trust beyond a key's tier, through the HTTP API on moto: operator rights only for a verified
address (or an out-of-band grant) and decided on use; what an account that has not proven its
address may do; a password reset that takes the account back; credentials without a tier."""

import json

import pytest
from pydantic import ValidationError

from app import composition
from app.ids import hash_secret
from app.settings import Settings
from app.store import keys
from tests.conftest import bearer, signup

OPERATOR = "ops@example.com"


def _settings():
    return composition.services().settings


def _mailed_token(settings, subject: str, to: str) -> str:
    mail = [json.loads(f.read_text()) for f in sorted(settings.outbox_dir.glob("*.json"))]
    body = [m for m in mail if m["subject"] == subject and m["to"] == to][-1]["body"]
    return body.split("token=", 1)[1].split()[0]


def _verify(client, settings, email: str) -> None:
    token = _mailed_token(settings, "Confirm your berth email", email)
    assert client.post("/v1/auth/verify", json={"token": token}).status_code == 200


def _shared_join_token(client, session: str):
    return client.post("/v1/cloud/join-tokens", headers=bearer(session), json={"shared": True})


@pytest.fixture
def operator_emails(aws_resources):
    _settings().operator_emails = [OPERATOR.upper()]  # compared without case
    return aws_resources


# --- operator rights ---------------------------------------------------------------------------


def test_an_operator_address_confers_nothing_until_it_is_verified(client, operator_emails):
    session = signup(client, email=OPERATOR)["token"]
    refused = _shared_join_token(client, session)
    assert refused.status_code == 403
    body = refused.json()
    assert body["success"] is False and body["status"] == 403
    assert "verified address" in body["error"] and OPERATOR in body["error"]

    _verify(client, operator_emails, OPERATOR)
    minted = _shared_join_token(client, session)  # the same session: decided on use, not at sign-in
    assert minted.status_code == 201, minted.text
    assert minted.json()["join_token"]["shared"] is True


def test_a_revocation_outranks_the_address_list_at_once_for_sessions_and_keys(client, operator_emails):
    session = signup(client, email=OPERATOR)["token"]
    _verify(client, operator_emails, OPERATOR)
    key = client.post("/api/auth/keys/generate", headers=bearer(session), json={"name": "ops", "tier": "admin"})
    key = key.json()["key"]
    assert _shared_join_token(client, key).status_code == 201

    composition.services().accounts.set_operator_grant(OPERATOR, "revoked")
    for credential in (session, key):
        refused = _shared_join_token(client, credential)
        assert refused.status_code == 403 and refused.json()["error"] == (
            "only the platform operator can mint join tokens for shared runtimes")
    assert client.post("/v1/cloud/join-tokens", headers=bearer(session), json={}).status_code == 201  # own ones still

    composition.services().accounts.set_operator_grant(OPERATOR, "granted")
    assert _shared_join_token(client, session).status_code == 201


def test_an_out_of_band_grant_needs_no_address_list(client, aws_resources):
    session = signup(client, email="boss@example.com")["token"]
    assert _shared_join_token(client, session).status_code == 403
    composition.services().accounts.set_operator_grant("BOSS@example.com", "granted")
    assert _shared_join_token(client, session).status_code == 201


def test_a_revoked_operators_shared_join_tokens_register_nothing(client, operator_emails):
    session = signup(client, email=OPERATOR)["token"]
    _verify(client, operator_emails, OPERATOR)
    secret = _shared_join_token(client, session).json()["token"]
    composition.services().accounts.set_operator_grant(OPERATOR, "revoked")
    registered = client.post("/v1/cloud/runtimes/register", json={"join_token": secret, "queue_mode": "lease"})
    assert registered.status_code == 403
    assert registered.json()["error"] == "this shared join token's minter is no longer the platform operator"


def test_signup_and_credentials_carry_no_operator_flag(client, operator_emails, store):
    session = signup(client, email=OPERATOR)["token"]
    credential = store.credentials.get(hash_secret(session))
    assert "operator" not in credential.attributes
    workspace = store.table.get(*keys.workspace(credential.workspace_id))
    assert "operator" not in workspace


# --- unverified accounts -----------------------------------------------------------------------


@pytest.fixture
def verification_required(aws_resources):
    _settings().require_email_verification = True
    return aws_resources


def test_an_unverified_account_mints_no_join_tokens_or_keys_and_runs_no_jobs(client, verification_required):
    session = signup(client)["token"]
    assert client.get("/v1/auth/me", headers=bearer(session)).status_code == 200  # it may look around
    attempts = {
        "mint join tokens": client.post("/v1/cloud/join-tokens", headers=bearer(session), json={}),
        "mint API keys": client.post("/api/auth/keys/generate", headers=bearer(session), json={"name": "k"}),
        "run jobs": client.post("/v1/jobs", headers=bearer(session),
                                json={"type": "agent.run", "payload": {"agent": "a"}}),
    }
    for doing, response in attempts.items():
        assert response.status_code == 403, (doing, response.text)
        assert response.json()["error"] == (f"verify your email address before you {doing}: follow the link mailed "
                                            "to you at signup")

    _verify(client, verification_required, "ada@example.com")
    assert client.post("/v1/cloud/join-tokens", headers=bearer(session), json={}).status_code == 201
    assert client.post("/api/auth/keys/generate", headers=bearer(session), json={"name": "k"}).status_code == 201
    assert client.post("/v1/jobs", headers=bearer(session),
                       json={"type": "agent.run", "payload": {"agent": "a"}}).status_code == 202


def test_where_verification_is_waived_an_unverified_account_may_do_all_that(client, aws_resources):
    session = signup(client)["token"]
    assert client.post("/v1/cloud/join-tokens", headers=bearer(session), json={}).status_code == 201
    assert client.post("/api/auth/keys/generate", headers=bearer(session), json={"name": "k"}).status_code == 201


def test_verification_cannot_be_turned_off_in_aws(monkeypatch):
    monkeypatch.setenv("BERTH_MODE", "aws")
    monkeypatch.delenv("BERTH_REQUIRE_EMAIL_VERIFICATION", raising=False)
    assert Settings().require_email_verification is True
    monkeypatch.setenv("BERTH_REQUIRE_EMAIL_VERIFICATION", "false")
    with pytest.raises(ValidationError, match="cannot be turned off in mode=aws"):
        Settings()
    monkeypatch.setenv("BERTH_MODE", "local")
    assert Settings().require_email_verification is False
    monkeypatch.delenv("BERTH_REQUIRE_EMAIL_VERIFICATION")
    assert Settings().require_email_verification is False


def test_a_password_reset_takes_the_account_back(client, aws_resources):
    """Someone signed up first with Ada's address and made a key; Ada resets the password: every
    session ends, the keys made before anyone proved the address die, the address counts as proven."""
    squatter = signup(client)["token"]
    early_key = client.post("/api/auth/keys/generate", headers=bearer(squatter), json={"name": "early"}).json()["key"]
    client.post("/v1/auth/forgot", json={"email": "ada@example.com"})
    reset_token = _mailed_token(aws_resources, "Reset your berth password", "ada@example.com")
    assert client.post("/v1/auth/reset", json={"token": reset_token, "password": "adas-own-pass"}).status_code == 200

    for credential in (squatter, early_key):
        assert client.get("/v1/auth/me", headers=bearer(credential)).status_code == 401
    session = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "adas-own-pass"}).json()
    assert session["user"]["email_verified"] is True
    later_key = client.post("/api/auth/keys/generate", headers=bearer(session["token"]), json={"name": "later"})
    later_key = later_key.json()["key"]
    keys_listed = client.get("/api/auth/keys", headers=bearer(session["token"])).json()["keys"]
    assert {k["name"]: bool(k["revoked_at"]) for k in keys_listed} == {"early": True, "later": False}

    client.post("/v1/auth/forgot", json={"email": "ada@example.com"})
    reset_token = _mailed_token(aws_resources, "Reset your berth password", "ada@example.com")
    client.post("/v1/auth/reset", json={"token": reset_token, "password": "adas-new-pass"})
    assert client.get("/v1/auth/me", headers=bearer(later_key)).status_code == 200  # made after the proof: kept


# --- tiers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [None, "", "root"])
def test_a_user_credential_without_a_valid_tier_is_refused(client, store, tier):
    key = client.post("/api/auth/keys/generate", headers=bearer(signup(client)["token"]),
                      json={"name": "k", "tier": "read"}).json()["key"]
    pk, sk = keys.credential(hash_secret(key))
    if tier is None:
        store.table.update(pk, sk, remove=("tier",))
    else:
        store.table.update(pk, sk, set={"tier": tier})
    store.credentials.forget(hash_secret(key))
    for method, path in (("GET", "/v1/jobs"), ("POST", "/api/auth/keys/generate")):
        response = client.request(method, path, headers=bearer(key), json={"name": "x"})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "these credentials carry no valid tier; sign in again or mint a new key"


def test_a_runtime_token_needs_no_tier(client):
    session = signup(client)["token"]
    join = client.post("/v1/cloud/join-tokens", headers=bearer(session), json={}).json()["token"]
    runtime = client.post("/v1/cloud/runtimes/register", json={"join_token": join}).json()
    beat = client.post("/v1/cloud/runtimes/heartbeat", headers=bearer(runtime["runtime_token"]), json={})
    assert beat.status_code == 200
    assert client.get("/v1/jobs", headers=bearer(runtime["runtime_token"])).status_code == 401  # not a user
