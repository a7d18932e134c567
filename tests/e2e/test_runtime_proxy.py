"""The runtime proxy: config, a signed proxy token the runtime verifies, and HTTP forwarded to a
streamable-HTTP MCP server inside a sandbox (which needs a policy with network access)."""

import time

import httpx
import pytest

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, WorkerProcess, new_account
from tests.support.sandbox_fixtures import ECHO_SERVER

pytestmark = pytest.mark.e2e

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "berth-test", "version": "1"}}}


@pytest.fixture(scope="module")
def owner(tmp_path_factory, hub):
    settings = {**FAST_SETTINGS, "BERTH_SANDBOX_NETWORK": "true"}
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600, environment=settings)
    stack = LocalStack(options).start()
    client = httpx.Client(base_url=stack.api_url, timeout=30)
    account = new_account(client)
    worker = WorkerProcess(stack, hub, tmp_path_factory.mktemp("proxy-worker") / "worker", account.join_token(),
                           "--sandbox-tool-dir", str(ECHO_SERVER.parent))
    worker.runtime_id
    yield account
    worker.stop()
    client.close()
    stack.stop()


def _http_sandbox(owner) -> str:
    response = owner.post("/v1/sandbox/sessions", json={"start_command": f"python3 {ECHO_SERVER}",
                                                       "transport": "http", "runtime": "python"})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    deadline = time.monotonic() + 60
    while owner.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] != "running":
        assert time.monotonic() < deadline, "the http sandbox did not start"
        time.sleep(0.1)
    return session_id


def test_config_token_and_proxied_mcp_request(owner):
    session_id = _http_sandbox(owner)
    config = owner.get(f"/api/runtime/config/{session_id}").json()
    assert config["transport"] == "http" and config["mcp_url"].endswith(f"/api/runtime/proxy/{session_id}/mcp")
    assert config["runtime"]["id"] == owner.job(session_id)["runtime_id"]

    token = owner.get(f"/api/runtime/proxy-auth/{session_id}", params={"method": "POST"}).json()
    assert token["header"] == "X-Berth-Proxy-Token" and token["token"].count(".") == 1

    headers = {**owner.headers, **MCP_HEADERS, "X-Berth-Proxy-Token": token["token"]}
    answer = owner.client.post(f"/api/runtime/proxy/{session_id}/mcp", headers=headers, json=INITIALIZE)
    assert answer.status_code == 200, answer.text
    assert '"serverInfo"' in answer.text and '"echo"' in answer.text
    assert answer.headers["content-security-policy"].startswith("sandbox")

    replayed = owner.client.post(f"/api/runtime/proxy/{session_id}/mcp", headers=headers, json=INITIALIZE)
    assert replayed.status_code == 403 and "used already" in replayed.json()["error"]

    for _ in range(2):  # without a token the API signs one for each request
        minted = owner.client.post(f"/api/runtime/proxy/{session_id}/mcp",
                                   headers={**owner.headers, **MCP_HEADERS}, json=INITIALIZE)
        assert minted.status_code == 200, minted.text

    for_get = owner.get(f"/api/runtime/proxy-auth/{session_id}", params={"method": "GET"}).json()["token"]
    wrong_method = owner.client.post(f"/api/runtime/proxy/{session_id}/mcp",
                                     headers={**owner.headers, **MCP_HEADERS, "X-Berth-Proxy-Token": for_get},
                                     json=INITIALIZE)
    assert wrong_method.status_code == 403 and "not POST" in wrong_method.json()["error"]

    body, _, signature = token["token"].partition(".")
    forged = owner.client.post(f"/api/runtime/proxy/{session_id}/mcp",
                               headers={**owner.headers, **MCP_HEADERS, "X-Berth-Proxy-Token": f"{body}.{'0' * 64}"},
                               json=INITIALIZE)
    assert forged.status_code == 403 and "signature" in forged.json()["error"]
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


def test_proxied_pages_cannot_act_on_the_apis_origin(owner):
    session_id = _http_sandbox(owner)
    for path in ("web/page", "web/compressed"):
        answer = owner.client.get(f"/api/runtime/proxy/{session_id}/{path}",
                                  headers={**owner.headers, "Accept-Encoding": "gzip"})
        assert answer.status_code == 200, answer.text
        assert "set-cookie" not in answer.headers and "content-encoding" not in answer.headers
        assert answer.headers["content-security-policy"].startswith("sandbox")
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.json()["text"].startswith("compressible")  # the body its headers describe
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


def test_stdio_sandboxes_cannot_be_proxied(owner):
    response = owner.post("/v1/sandbox/sessions", json={"start_command": f"python3 {ECHO_SERVER}"})
    session_id = response.json()["session_id"]
    deadline = time.monotonic() + 60
    while owner.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    refused = owner.client.get(f"/api/runtime/proxy/{session_id}/mcp", headers=owner.headers)
    assert refused.status_code == 409 and "stdio" in refused.json()["error"]
    owner.delete(f"/v1/sandbox/sessions/{session_id}")
