"""berth's `/mcp` on the live local stack, with a real worker running real MCP servers in
sandboxes: the official Python SDK client (both protocol eras) and the official TypeScript SDK
client over streamable HTTP, per key tier; the Lambda handler (functions.api) serving the same
conversation one invocation at a time; per-user OAuth for a shared tool against a real OAuth
provider, through the routes, the CLI and `list_shared_tools`."""

import json
from urllib.parse import urlsplit

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, BerthCli, WorkerProcess, new_account
from tests.support.lambda_events import http_event
from tests.support.mcp_demo import node_interop, run_ts_client
from tests.support.mcp_tiers import ADMIN_TOOLS, READ_TOOLS, STANDARD_TOOLS
from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET, running_oauth_server
from tests.support.sandbox_fixtures import ECHO_SERVER

pytestmark = pytest.mark.e2e

ECHO = f"python3 {ECHO_SERVER}"
GITHUB = "io.github.github/github-mcp-server"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600, environment=dict(FAST_SETTINGS))
    running = LocalStack(options).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def workspace(stack, hub, tmp_path_factory):
    """A workspace with a key of each tier and one worker whose sandboxes can run the echo server."""
    client = httpx.Client(base_url=stack.api_url, timeout=30)
    account = new_account(client)
    keys = {}
    for tier in ("read", "standard", "admin"):
        minted = account.post("/api/auth/keys/generate", json={"name": tier, "tier": tier})
        keys[tier] = minted.json()["key"]
    worker = WorkerProcess(stack, hub, tmp_path_factory.mktemp("mcp-worker") / "worker", account.join_token(),
                           "--max-concurrent-jobs", "8", "--sandbox-tool-dir", str(ECHO_SERVER.parent))
    assert worker.runtime_id  # waits for registration
    yield {"account": account, "keys": keys, "url": f"{stack.api_url}/mcp"}
    worker.stop()
    client.close()


def _http(key: str, **headers: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"X-API-Key": key, **headers}, timeout=60)


@pytest.mark.anyio
async def test_the_python_client_lists_by_tier_and_runs_a_sandboxed_servers_tool(workspace):
    for tier, expected in (("read", READ_TOOLS), ("standard", STANDARD_TOOLS), ("admin", ADMIN_TOOLS)):
        async with _http(workspace["keys"][tier]) as http, \
                streamable_http_client(workspace["url"], http_client=http) as streams, \
                ClientSession(*streams) as session:
            initialized = await session.initialize()
            assert initialized.server_info.name == "berth"
            assert {tool.name for tool in (await session.list_tools()).tools} == expected

    async with _http(workspace["keys"]["standard"]) as http, \
            streamable_http_client(workspace["url"], http_client=http) as streams, ClientSession(*streams) as session:
        await session.initialize()
        created = await session.call_tool("create_sandbox", {"start_command": ECHO, "runtime": "python",
                                                             "wait_seconds": 25})
        assert created.is_error is False, created
        started = created.structured_content
        assert started["sandbox"]["state"] == "running", started
        assert "echo" in {tool["name"] for tool in started["tools"]}
        sandbox_id = started["sandbox"]["id"]
        echoed = await session.call_tool("call_sandbox_tool", {"sandbox_id": sandbox_id, "name": "echo",
                                                               "arguments": {"text": "through berth's /mcp"}})
        assert echoed.is_error is False and echoed.structured_content["ok"] is True
        assert "through berth's /mcp" in json.dumps(echoed.structured_content["result"])
        containers = (await session.call_tool("list_containers", {})).structured_content["containers"]
        assert sandbox_id in {container["id"] for container in containers}
        refused = await session.call_tool("sandbox_action", {"sandbox_id": sandbox_id, "action": "delete"})
        assert refused.is_error is True and "needs an admin-tier key" in refused.content[0].text

    async with _http(workspace["keys"]["admin"]) as http:
        async with Client(streamable_http_client(workspace["url"], http_client=http), mode="2026-07-28") as client:
            inspected = await client.call_tool("inspect_container", {"container_id": sandbox_id})
            assert inspected.structured_content["processes"]["state"] == "running"
            deleted = await client.call_tool("sandbox_action", {"sandbox_id": sandbox_id, "action": "delete"})
            assert deleted.structured_content["action"] == "delete"
    gone = workspace["account"].get(f"/api/sandboxes/{sandbox_id}").json()
    assert gone["status"] in ("cancelled", "complete")


def test_the_typescript_client_does_the_same(workspace):
    project = node_interop()
    standard = {"X-API-Key": workspace["keys"]["standard"]}
    created = run_ts_client(project, workspace["url"], standard, [
        {"name": "create_sandbox", "arguments": {"start_command": ECHO, "runtime": "python", "wait_seconds": 25}},
        {"name": "create_sandbox", "arguments": {"start_command": ECHO, "runtime": "ruby"}},
    ])
    assert "error" not in created, created
    assert created["server"]["name"] == "berth"
    assert {tool["name"] for tool in created["tools"]} == STANDARD_TOOLS
    started, mistaken = (call["result"] for call in created["calls"])
    assert started["isError"] is False and started["structuredContent"]["sandbox"]["state"] == "running"
    assert mistaken["isError"] is True and "Input should be 'node' or 'python'" in mistaken["content"][0]["text"]
    sandbox_id = started["structuredContent"]["sandbox"]["id"]

    called = run_ts_client(project, workspace["url"], standard, [
        {"name": "call_sandbox_tool", "arguments": {"sandbox_id": sandbox_id, "name": "echo",
                                                    "arguments": {"text": "from typescript"}}},
        {"name": "list_sandboxes", "arguments": {"status": "running"}},
    ])
    echoed, page = (call["result"] for call in called["calls"])
    assert echoed["structuredContent"]["ok"] is True and "from typescript" in json.dumps(echoed["structuredContent"])
    assert sandbox_id in {sandbox["id"] for sandbox in page["structuredContent"]["sandboxes"]}

    read_only = run_ts_client(project, workspace["url"], {"X-API-Key": workspace["keys"]["read"]}, [
        {"name": "call_sandbox_tool", "arguments": {"sandbox_id": sandbox_id, "name": "echo",
                                                    "arguments": {"text": "no"}}}])
    assert {tool["name"] for tool in read_only["tools"]} == READ_TOOLS
    assert "needs a standard-tier key; yours is read" in read_only["calls"][0]["result"]["content"][0]["text"]
    assert "401" in run_ts_client(project, workspace["url"], {"X-API-Key": "bak_unknown-key"}, [])["error"]
    workspace["account"].delete(f"/api/sandboxes/{sandbox_id}")


def test_the_lambda_handler_serves_the_same_conversation_invocation_after_invocation(workspace):
    import functions.api

    handler, key = functions.api.handler, workspace["keys"]["standard"]

    def invoke(method: str, params: dict | None = None, message_id: int | None = 1) -> dict:
        message = {"jsonrpc": "2.0", "method": method, **({"params": params} if params is not None else {})}
        if message_id is not None:
            message["id"] = message_id
        response = handler(http_event("POST", "/mcp", message, {"x-api-key": key}), None)
        assert response["statusCode"] in (200, 202), response
        return json.loads(response["body"])["result"] if response["statusCode"] == 200 else {}

    initialized = invoke("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                        "clientInfo": {"name": "lambda-e2e", "version": "1"}})
    assert initialized["serverInfo"]["name"] == "berth"
    invoke("notifications/initialized", message_id=None)
    assert {tool["name"] for tool in invoke("tools/list")["tools"]} == STANDARD_TOOLS
    created = invoke("tools/call", {"name": "create_sandbox", "arguments": {
        "start_command": ECHO, "runtime": "python", "wait_seconds": 25}})["structuredContent"]
    assert created["sandbox"]["state"] == "running", created
    for number in range(4):
        echoed = invoke("tools/call", {"name": "call_sandbox_tool", "arguments": {
            "sandbox_id": created["sandbox"]["id"], "name": "echo", "arguments": {"text": f"invocation {number}"}}})
        assert f"invocation {number}" in json.dumps(echoed["structuredContent"])
        assert invoke("tools/call", {"name": "service_status"})["structuredContent"]["caller"]["tier"] == "standard"
    workspace["account"].delete(f"/api/sandboxes/{created['sandbox']['id']}")


@pytest.fixture
def provider(stack):
    with running_oauth_server() as running:
        running.settings(f"{stack.api_url}/api/auth/callback")  # registers berth's redirect URI
        yield running


def test_users_connect_a_shared_tool_with_their_own_accounts_through_the_cli(stack, workspace, provider, tmp_path):
    admin = {"X-API-Key": workspace["keys"]["admin"]}
    registered = httpx.put(f"{stack.api_url}/api/shared-tools/{GITHUB}/oauth/client", headers=admin, json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "authorization_endpoint": f"{provider.base_url}/authorize",
        "token_endpoint": f"{provider.base_url}/token", "userinfo_endpoint": f"{provider.base_url}/userinfo",
        "revocation_endpoint": f"{provider.base_url}/revoke", "issuer": provider.base_url,
        "jwks_uri": f"{provider.base_url}/jwks", "scopes": ["openid", "email"]})
    assert registered.status_code == 200, registered.text
    assert urlsplit(registered.json()["redirect_uri"]).path == "/api/auth/callback"

    berth = BerthCli(tmp_path / "config", stack.api_url)
    as_product = {"BERTH_API_URL": stack.api_url, "BERTH_API_KEY": workspace["keys"]["standard"]}
    for user, email in (("ada", "ada@example.com"), ("bob", "bob@example.com")):
        linked = berth("shared-tools", "connect", GITHUB, "--user", user, "--json", env=as_product)
        assert linked.returncode == 0, linked.stderr
        provider.signed_in = provider.users[email]
        page = httpx.get(json.loads(linked.stdout)["authorization_url"], follow_redirects=True)  # the user's browser
        assert page.status_code == 200 and "Connected" in page.text

    status = berth("shared-tools", "status", GITHUB, "--user", "ada", "--json", env=as_product)
    assert json.loads(status.stdout)["connected"] is True and json.loads(status.stdout)["scopes"] == ["openid", "email"]
    for user, email in (("ada", "ada@example.com"), ("bob", "bob@example.com")):
        answer = httpx.get(f"{stack.api_url}/api/shared-tools/{GITHUB}/oauth/user-email",
                           headers={"X-API-Key": workspace["keys"]["read"], "X-User-Id": user})
        assert answer.json()["email"] == email

    listed = run_listing(workspace, "carol")
    assert listed["user_id"] == "carol" and listed["shared_tools"][0]["connection"]["connected"] is False
    assert run_listing(workspace, "ada")["shared_tools"][0]["connection"]["connected"] is True

    gone = berth("shared-tools", "disconnect", GITHUB, "--user", "ada", env=as_product)
    assert gone.returncode == 0 and "the provider revoked the grant" in gone.stdout
    assert {token.user.email for token in provider.tokens if not token.revoked} == {"bob@example.com"}

    config = berth("mcp", "config", "--instance", "acme", "--json", env=as_product)
    assert json.loads(config.stdout)["mcpServers"]["berth"]["url"] == workspace["url"]
    pasted = berth("mcp", "config", "--shape", "vscode", env=as_product)
    assert json.loads(pasted.stdout)["servers"]["berth"]["headers"] == {"Authorization": "Bearer ${BERTH_API_KEY}"}
    assert berth("mcp", "sync", "--instance", "acme", "--client", "e2e", env=as_product).returncode == 0
    shown = berth("mcp", "config", "--instance", "acme", "--json", env=as_product)
    assert json.loads(shown.stdout)["last_sync"]["client"] == "e2e"


def run_listing(workspace, user: str) -> dict:
    report = run_ts_client(node_interop(), workspace["url"],
                           {"X-API-Key": workspace["keys"]["read"], "X-User-Id": user},
                           [{"name": "list_shared_tools", "arguments": {}}])
    return report["calls"][0]["result"]["structuredContent"]
