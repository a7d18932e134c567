"""Accounts and sessions through the HTTP API, on in-process moto."""

import json
import time

from app.ids import hash_secret
from app.store import keys
from tests.conftest import bearer, signup


def _outbox(settings) -> list[dict]:
    if not settings.outbox_dir.exists():
        return []
    files = sorted(settings.outbox_dir.glob("*.json"))
    return [json.loads(f.read_text()) for f in files]


def _token_from_mail(body: str) -> str:
    return body.split("token=", 1)[1].split()[0]


def test_signup_creates_workspace_and_owner_and_sends_verification(client, aws_resources):
    result = signup(client)
    assert result["token"].startswith("bst_")
    user = result["user"]
    assert user["role"] == "Owner" and user["email"] == "ada@example.com"
    assert user["workspace_id"].startswith("ws_") and user["workspace_slug"]
    mail = _outbox(aws_resources)
    assert [m["subject"] for m in mail] == ["Confirm your berth email"]
    me = client.get("/v1/auth/me", headers=bearer(result["token"])).json()
    assert me["user"]["id"] == user["id"] and me["auth"] == "session"


def test_signup_with_a_taken_email_is_409_in_any_case(client):
    signup(client)
    response = client.post("/v1/auth/signup", json={"name": "B", "email": "ADA@example.com", "password": "another1"})
    assert response.status_code == 409
    assert response.json()["error"] == "an account with this email already exists"


def test_signup_validation_errors_are_readable(client):
    response = client.post("/v1/auth/signup", json={"name": "A", "email": "not-an-email", "password": "123"})
    body = response.json()
    assert response.status_code == 422 and body["success"] is False and body["status"] == 422
    assert "email" in body["error"] and "password" in body["error"]


def test_passwords_and_tokens_are_stored_only_as_hashes(client, store):
    result = signup(client, password="correct-horse")
    items = store.table.scan_all()
    dumped = json.dumps(items, default=str)
    assert "correct-horse" not in dumped and result["token"] not in dumped
    user = next(i for i in items if i["sk"].startswith("USER#"))
    assert user["password_hash"].startswith("$argon2id$")
    assert store.credentials.get(hash_secret(result["token"])).kind == "session"


def test_login_right_and_wrong_password(client):
    signup(client)
    ok = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "correct-horse"})
    assert ok.status_code == 200 and ok.json()["token"].startswith("bst_")
    wrong = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "wrong-horse"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong email or password"
    unknown = client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "wrong email or password"


def test_logout_ends_one_session_and_all_ends_every_session(client):
    first = signup(client)["token"]
    second = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "correct-horse"}).json()["token"]
    third = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "correct-horse"}).json()["token"]
    assert client.post("/v1/auth/logout", headers=bearer(first)).json()["sessions_ended"] == 1
    assert client.get("/v1/auth/me", headers=bearer(first)).status_code == 401
    assert client.get("/v1/auth/me", headers=bearer(second)).status_code == 200
    assert client.post("/v1/auth/logout?all=true", headers=bearer(second)).json()["sessions_ended"] == 2
    for token in (second, third):
        assert client.get("/v1/auth/me", headers=bearer(token)).status_code == 401


def test_expired_session_is_refused(client, store):
    token = signup(client)["token"]
    credential = store.credentials.get(hash_secret(token))
    store.table.update(*keys.credential(credential.digest), set={"expires_epoch": int(time.time()) - 1})
    response = client.get("/v1/auth/me", headers=bearer(token))
    assert response.status_code == 401 and response.json()["error"] == "invalid, expired or revoked credentials"


def test_forgot_always_answers_200_and_mails_only_real_accounts(client, aws_resources):
    signup(client)
    before = len(_outbox(aws_resources))
    for email in ("ada@example.com", "ghost@example.com"):
        response = client.post("/v1/auth/forgot", json={"email": email})
        assert response.status_code == 200 and response.json()["ok"] is True
    mail = _outbox(aws_resources)[before:]
    assert len(mail) == 1 and mail[0]["to"] == "ada@example.com" and "token=brs_" in mail[0]["body"]


def test_reset_sets_the_password_once_and_ends_sessions(client, aws_resources):
    session = signup(client)["token"]
    client.post("/v1/auth/forgot", json={"email": "ada@example.com"})
    token = _token_from_mail(_outbox(aws_resources)[-1]["body"])
    response = client.post("/v1/auth/reset", json={"token": token, "password": "new-password"})
    assert response.status_code == 200
    assert client.get("/v1/auth/me", headers=bearer(session)).status_code == 401
    assert client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "new-password"}).status_code == 200
    assert client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "correct-horse"}).status_code == 401
    reused = client.post("/v1/auth/reset", json={"token": token, "password": "third-password"})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid or expired reset token"


def test_expired_reset_token_is_refused(client, aws_resources, store):
    signup(client)
    client.post("/v1/auth/forgot", json={"email": "ada@example.com"})
    token = _token_from_mail(_outbox(aws_resources)[-1]["body"])
    store.table.update(*keys.credential(hash_secret(token)), set={"expires_epoch": int(time.time()) - 1})
    assert client.post("/v1/auth/reset", json={"token": token, "password": "new-password"}).status_code == 400


def test_verify_email_once(client, aws_resources):
    session = signup(client)["token"]
    token = _token_from_mail(_outbox(aws_resources)[0]["body"])
    assert client.post("/v1/auth/verify", json={"token": token}).status_code == 200
    assert client.get("/v1/auth/me", headers=bearer(session)).json()["user"]["email_verified"] is True
    again = client.post("/v1/auth/verify", json={"token": token})
    assert again.status_code == 400 and "invalid or expired" in again.json()["error"]
