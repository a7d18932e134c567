"""The Lambda entry point: Mangum around the app, driven by API Gateway HTTP API v2 events."""

import base64
import json

import pytest


def _event(method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", "content-type": "application/json",
                    **(headers or {})},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                               "sourceIp": "203.0.113.1", "userAgent": "pytest"},
            "requestId": "apigw-req-1", "routeKey": "$default", "stage": "$default", "time": "22/Nov/2026:07:00:00 +0000",
            "timeEpoch": 1795330000000,
        },
        "body": base64.b64encode(raw).decode() if raw else None,
        "isBase64Encoded": bool(raw),
    }


@pytest.fixture
def handler(aws_resources):
    import importlib

    import functions.api

    return importlib.reload(functions.api).handler


def test_health_through_the_lambda_handler(handler):
    response = handler(_event("GET", "/v1/health"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "ok"


def test_signup_then_me_through_the_lambda_handler(handler):
    created = handler(_event("POST", "/v1/auth/signup",
                             {"name": "Ada", "email": "ada@example.com", "password": "correct-horse"}), None)
    assert created["statusCode"] == 201
    token = json.loads(created["body"])["token"]
    me = handler(_event("GET", "/v1/auth/me", headers={"authorization": f"Bearer {token}"}), None)
    assert me["statusCode"] == 200 and json.loads(me["body"])["user"]["email"] == "ada@example.com"
    missing = handler(_event("GET", "/v1/auth/me"), None)
    body = json.loads(missing["body"])
    assert missing["statusCode"] == 401 and body["success"] is False and body["request_id"]
