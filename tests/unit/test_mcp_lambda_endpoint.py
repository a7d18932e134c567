"""The /mcp foundation through the Lambda handler: Mangum with lifespan off, one JSON-RPC message per
API Gateway (HTTP API v2) invocation, many warm invocations in a row."""

import asyncio
import base64
import json
import subprocess
import sys

import pytest
from mangum import Mangum
from pydantic import BaseModel

from app.auth.principal import Tier
from app.errors import ServiceUnavailable
from app.main import create_app
from app.mcp.endpoint import StatelessMCPEndpoint, allowed_hosts_for, allowed_origins_for, mcp_router
from app.mcp.tools import build_server, changes, reads, tool
from tests.support.mcp_demo import ALLOWED_HOSTS, LAMBDA_HOST, authenticate_by_key, demo_app

HANDSHAKE_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"


def _event(message: dict | None, *, key: str | None = "key-admin", method: str = "POST", host: str = LAMBDA_HOST,
           headers: dict | None = None) -> dict:
    raw = json.dumps(message).encode() if message is not None else b""
    all_headers = {"host": host, "content-type": "application/json", "accept": "application/json, text/event-stream",
                   **({"x-api-key": key} if key else {}), **(headers or {})}
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/mcp", "rawQueryString": "", "headers": all_headers,
        "requestContext": {
            # API Gateway routes by its own domain name, whatever Host header a client sends.
            "accountId": "123456789012", "apiId": "abc123", "domainName": LAMBDA_HOST, "domainPrefix": "abc123",
            "http": {"method": method, "path": "/mcp", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1",
                     "userAgent": "pytest"},
            "requestId": "apigw-req-1", "routeKey": "$default", "stage": "$default",
            "time": "22/Nov/2026:07:00:00 +0000", "timeEpoch": 1795330000000,
        },
        "body": base64.b64encode(raw).decode() if raw else None,
        "isBase64Encoded": bool(raw),
    }


def _request(method: str, params: dict | None = None, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, **({"params": params} if params is not None else {})}


def _modern(method: str, params: dict) -> tuple[dict, dict]:
    """A 2026-07-28 request: no handshake; version, client info and capabilities ride in `_meta`."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "pytest", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {"mcp-protocol-version": MODERN_VERSION, "mcp-method": method}
    if method == "tools/call":
        headers["mcp-name"] = params["name"]
    return _request(method, {**params, "_meta": meta}), headers


INITIALIZE = _request("initialize", {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
                                     "clientInfo": {"name": "pytest", "version": "1"}})


@pytest.fixture
def notes():
    return {}


@pytest.fixture
def handler(notes):
    return Mangum(demo_app(notes), lifespan="off")


def _answer(response: dict) -> dict:
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def _call(handler, name: str, arguments: dict, key: str = "key-admin") -> dict:
    body = _answer(handler(_event(_request("tools/call", {"name": name, "arguments": arguments}), key=key), None))
    assert "error" not in body, body  # a user's mistake is never a protocol error
    return body["result"]


def _listed(handler, key: str) -> dict[str, dict]:
    return {entry["name"]: entry for entry in _answer(handler(_event(_request("tools/list"), key=key), None))
            ["result"]["tools"]}


def test_initialize_list_and_call_each_in_its_own_warm_invocation(handler, notes):
    initialized = handler(_event(INITIALIZE), None)
    result = _answer(initialized)["result"]
    assert result["serverInfo"]["name"] == "berth-demo" and result["protocolVersion"] == HANDSHAKE_VERSION
    assert "mcp-session-id" not in initialized["headers"]  # stateless: nothing to come back to
    acknowledged = handler(_event({"jsonrpc": "2.0", "method": "notifications/initialized"}), None)
    assert acknowledged["statusCode"] == 202
    assert set(_listed(handler, "key-standard")) == {"service_status", "notes_create"}
    for number in range(1, 6):
        created = _call(handler, "notes_create", {"title": f"note {number}", "priority": "high"}, key="key-standard")
        assert created["isError"] is False
        assert created["structuredContent"] == {"id": f"note_{number}", "title": f"note {number}", "priority": "high"}
    status = _call(handler, "service_status", {}, key="key-read")["structuredContent"]
    assert status == {"status": "ok", "workspace_id": "ws_demo", "tier": "read", "notes": 5}


def test_every_invocation_may_run_on_a_fresh_event_loop(handler):
    original = asyncio.get_event_loop()
    try:
        for number in range(3):
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            assert _call(handler, "notes_create", {"title": f"fresh {number}"})["isError"] is False
            loop.close()  # nothing of the request is left on it
    finally:
        asyncio.set_event_loop(original)
    assert _call(handler, "service_status", {})["structuredContent"]["notes"] == 3


def test_a_key_lists_only_the_tools_its_tier_may_call(handler):
    assert set(_listed(handler, "key-read")) == {"service_status"}
    assert set(_listed(handler, "key-standard")) == {"service_status", "notes_create"}
    everything = _listed(handler, "key-admin")
    assert set(everything) == {"service_status", "notes_create", "notes_delete"}
    assert everything["service_status"]["annotations"] == {
        "title": "Service status", "readOnlyHint": True, "destructiveHint": False, "idempotentHint": True}
    assert everything["notes_delete"]["annotations"]["destructiveHint"] is True
    create = everything["notes_create"]
    assert create["inputSchema"]["properties"]["priority"]["enum"] == ["low", "normal", "high"]
    assert create["inputSchema"]["properties"]["title"]["maxLength"] == 40
    assert create["inputSchema"]["required"] == ["title"]
    assert create["outputSchema"]["required"] == ["id", "title", "priority"]


def test_a_call_above_the_key_tier_is_a_tool_error_naming_the_tier_it_needs(handler, notes):
    refused = _call(handler, "notes_create", {"title": "mine"}, key="key-read")
    assert refused["isError"] is True
    assert refused["content"][0]["text"] == (
        "Error executing tool notes_create: this action needs a standard-tier key; yours is read")
    deleting = _call(handler, "notes_delete", {"note_id": "note_1"}, key="key-standard")
    assert deleting["isError"] is True and "needs an admin-tier key; yours is standard" in deleting["content"][0]["text"]
    assert notes == {}


@pytest.mark.parametrize(("arguments", "expected"), [
    ({}, "title\n  Field required"),
    ({"title": "x" * 41}, "String should have at most 40 characters"),
    ({"title": "ok", "priority": "urgent"}, "Input should be 'low', 'normal' or 'high'"),
])
def test_arguments_outside_the_input_schema_are_tool_errors(handler, notes, arguments, expected):
    result = _call(handler, "notes_create", arguments)
    assert result["isError"] is True and expected in result["content"][0]["text"]
    assert notes == {}


def test_berth_errors_from_the_tool_are_tool_errors_with_their_message(handler):
    assert _call(handler, "notes_create", {"title": "twice"})["isError"] is False
    duplicate = _call(handler, "notes_create", {"title": "twice"})
    assert duplicate["isError"] is True
    assert duplicate["content"][0]["text"] == "Error executing tool notes_create: a note titled 'twice' already exists"
    missing = _call(handler, "notes_delete", {"note_id": "note_9"})
    assert missing["content"][0]["text"] == "Error executing tool notes_delete: no note note_9"
    again = _call(handler, "notes_delete", {"note_id": "note_9", "missing_ok": True})
    assert again["isError"] is False and again["structuredContent"] == {"id": "note_9", "deleted": False}
    unknown = _call(handler, "notes_archive", {})
    assert unknown["isError"] is True and unknown["content"][0]["text"] == "Unknown tool: notes_archive"


def test_a_crash_in_a_tool_reaches_the_caller_only_as_a_generic_tool_error():
    class Nothing(BaseModel):
        done: bool

    def explode() -> Nothing:
        """Fail the way a bug fails."""
        raise RuntimeError("table berth-prod, key ws_1#secret")

    def overloaded() -> Nothing:
        """Fail the way an unavailable dependency fails."""
        raise ServiceUnavailable("queue berth-rt-7 is unreachable")

    hints = changes("Fail", destructive=False, idempotent=True)
    server = build_server("crash", "0", [tool(explode, tier=Tier.read, annotations=hints),
                                         tool(overloaded, tier=Tier.read, annotations=hints)])
    app = create_app()
    app.include_router(mcp_router(StatelessMCPEndpoint(server, authenticate=authenticate_by_key,
                                                       allowed_hosts=ALLOWED_HOSTS)))
    handler = Mangum(app, lifespan="off")
    for name in ("explode", "overloaded"):
        result = _call(handler, name, {})
        assert result["isError"] is True and result["content"][0]["text"] == f"Error executing tool {name}"


def test_requests_without_a_known_key_get_a_401_that_mcp_clients_can_read(handler):
    for key in (None, "key-unknown"):
        response = handler(_event(_request("tools/list"), key=key), None)
        error = json.loads(response["body"])["error"]
        assert response["statusCode"] == 401 and response["headers"]["www-authenticate"] == 'Bearer realm="berth"'
        assert error["message"] == "missing or unknown API key"
        assert error["data"]["status"] == 401 and error["data"]["request_id"] == response["headers"]["x-request-id"]


def test_a_host_or_origin_outside_the_allowlist_is_refused_before_authentication(handler):
    rebound = handler(_event(_request("tools/list"), key=None, host="evil.example.com"), None)
    assert rebound["statusCode"] == 421 and rebound["body"] == "Invalid Host header"
    cross_site = handler(_event(_request("tools/list"), headers={"origin": "https://evil.example.com"}), None)
    assert cross_site["statusCode"] == 403


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_anything_but_post_is_405_at_once(handler, method):
    response = handler(_event(None, method=method), None)
    assert response["statusCode"] == 405 and response["headers"]["allow"] == "POST"
    assert json.loads(response["body"])["error"]["code"] == -32600


def test_the_2026_protocol_needs_no_handshake_and_keeps_the_tier_gate(handler):
    listing, headers = _modern("tools/list", {})
    listed = _answer(handler(_event(listing, key="key-read", headers=headers), None))["result"]
    assert [entry["name"] for entry in listed["tools"]] == ["service_status"]
    call, headers = _modern("tools/call", {"name": "notes_create", "arguments": {"title": "modern"}})
    refused = _answer(handler(_event(call, key="key-read", headers=headers), None))["result"]
    assert refused["isError"] is True and "needs a standard-tier key" in refused["content"][0]["text"]
    created = _answer(handler(_event(call, key="key-standard", headers=headers), None))["result"]
    assert created["structuredContent"]["title"] == "modern" and created["resultType"] == "complete"


def test_a_tool_must_state_its_hints_and_return_a_typed_result():
    from mcp.server.mcpserver.exceptions import InvalidSignature
    from mcp_types import ToolAnnotations

    class Done(BaseModel):
        done: bool

    def vague() -> Done:
        """No hints."""
        return Done(done=True)

    def untyped():
        """No return type."""
        return {"done": True}

    with pytest.raises(ValueError, match="state readOnlyHint, destructiveHint and idempotentHint"):
        tool(vague, tier=Tier.read, annotations=ToolAnnotations(read_only_hint=True))
    with pytest.raises(ValueError, match="cannot be destructive"):
        tool(vague, tier=Tier.read, annotations=ToolAnnotations(read_only_hint=True, destructive_hint=True,
                                                                 idempotent_hint=True))
    with pytest.raises(InvalidSignature, match="return annotation required"):
        tool(untyped, tier=Tier.read, annotations=reads("Untyped"))


def test_allowed_hosts_come_from_the_urls_clients_use():
    assert allowed_hosts_for(["https://api.berth.dev", "abc123.execute-api.us-east-1.amazonaws.com",
                              "http://[::1]:7500/"]) == [
        "api.berth.dev", "api.berth.dev:*", "abc123.execute-api.us-east-1.amazonaws.com",
        "abc123.execute-api.us-east-1.amazonaws.com:*", "[::1]", "[::1]:*"]
    assert allowed_origins_for(["https://console.berth.dev", "http://127.0.0.1:7500"]) == [
        "https://console.berth.dev", "https://console.berth.dev:*", "http://127.0.0.1", "http://127.0.0.1:*"]
    with pytest.raises(ValueError):
        allowed_hosts_for(["https://"])
    with pytest.raises(ValueError):
        allowed_origins_for(["console.berth.dev"])


def test_the_mcp_package_itself_does_not_load_the_sdk():
    probe = "import sys, app.mcp, app.mcp.caller; print('mcp.server' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
