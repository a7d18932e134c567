"""API Gateway HTTP API (payload 2.0) events, as the Lambda handler receives them."""

import base64
import json

GATEWAY = "abc123.execute-api.us-east-1.amazonaws.com"


def http_event(method: str, path: str, body: dict | None = None, headers: dict | None = None,
               host: str = GATEWAY) -> dict:
    """A request to `path` through the gateway at GATEWAY (its `domainName` whatever `host` says:
    the gateway routes by its own name)."""
    raw = json.dumps(body).encode() if body is not None else b""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"host": host, "content-type": "application/json",
                    "accept": "application/json, text/event-stream", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": GATEWAY, "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1",
                     "userAgent": "pytest"},
            "requestId": "apigw-req-1", "routeKey": "$default", "stage": "$default",
            "time": "22/Nov/2026:07:00:00 +0000", "timeEpoch": 1795330000000,
        },
        "body": base64.b64encode(raw).decode() if raw else None, "isBase64Encoded": bool(raw),
    }
