"""Every failure a client can cause is a 4xx in the one error shape, with the request id."""

import pytest

from tests.conftest import bearer, signup


def _assert_error(response, status: int, fragment: str):
    body = response.json()
    assert response.status_code == status, response.text
    assert body["success"] is False and body["status"] == status and fragment in body["error"]
    assert body["request_id"] == response.headers["x-request-id"]


def test_request_id_is_echoed_or_minted(client):
    minted = client.get("/health")
    assert minted.headers["x-request-id"].startswith("req_")
    echoed = client.get("/health", headers={"X-Request-Id": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    unsafe = client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"].startswith("req_")


def test_malformed_json(client):
    response = client.post("/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"})
    _assert_error(response, 400, "malformed JSON body")


def test_wrong_types(client):
    token = signup(client)["token"]
    response = client.post("/v1/jobs", headers=bearer(token), json={"type": "model.inspect", "ttl_seconds": "soon"})
    _assert_error(response, 422, "ttl_seconds")
    unknown_type = client.post("/v1/jobs", headers=bearer(token), json={"type": "rocket.launch"})
    _assert_error(unknown_type, 422, "type")


def test_unknown_route_and_method(client):
    _assert_error(client.get("/v1/nothing-here"), 404, "no route GET /v1/nothing-here")
    _assert_error(client.put("/health"), 405, "method PUT is not allowed")


def test_oversized_body_declared_and_streamed(client, aws_resources):
    limit = aws_resources.max_body_bytes
    big = b'{"email": "' + b"a" * (limit + 10) + b'"}'
    _assert_error(client.post("/v1/auth/login", content=big, headers={"content-type": "application/json"}), 413,
                  "too large")

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    streamed = client.post("/v1/auth/login", content=chunks(), headers={"content-type": "application/json"})
    _assert_error(streamed, 413, "too large")


@pytest.mark.parametrize("headers, message", [
    ({}, "missing credentials"),
    ({"Authorization": "Basic abc"}, "must be 'Bearer <token>'"),
    ({"Authorization": "Bearer bak_not-a-real-key"}, "invalid, expired or revoked"),
    ({"X-API-Key": "bak_not-a-real-key"}, "invalid, expired or revoked"),
])
def test_missing_or_bad_credentials(client, headers, message):
    _assert_error(client.get("/v1/auth/me", headers=headers), 401, message)


def test_runtime_token_does_not_open_user_routes(client):
    response = client.post("/v1/cloud/runtimes/heartbeat", headers=bearer(signup(client)["token"]), json={})
    _assert_error(response, 401, "invalid, expired or revoked")


def test_logs_are_json_lines_without_secrets(client, capsys):
    token = signup(client, password="hunter2-secret")["token"]
    client.get("/v1/auth/me", headers=bearer(token))
    client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "hunter2-secret"})
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("{")]
    assert lines, "expected JSON log lines"
    import json

    records = [json.loads(line) for line in lines]
    assert any(r.get("path") == "/v1/auth/me" and r["workspace"].startswith("ws_") for r in records)
    assert all(r["request_id"] for r in records)
    assert token not in err and "hunter2-secret" not in err
