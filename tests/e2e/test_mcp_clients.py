"""Both official MCP clients against the /mcp foundation served by uvicorn over real HTTP: the
Python SDK (the 2025-11-25 handshake with `ClientSession`, and the 2026-07-28 protocol with
`Client`) and the TypeScript SDK (`StreamableHTTPClientTransport`, from npm)."""

import httpx2
import pytest
from mcp import ClientSession
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.mcp_demo import demo_app, node_interop, run_ts_client, serve

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def notes():
    return {}


@pytest.fixture(scope="module")
def base_url(notes):
    with serve(demo_app(notes)) as url:
        yield url


def _http(key: str | None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"X-API-Key": key} if key else {}, timeout=30)


async def test_the_python_client_initializes_lists_by_tier_and_calls(base_url, notes):
    async with _http("key-standard") as http, streamable_http_client(f"{base_url}/mcp", http_client=http) as streams:
        async with ClientSession(*streams) as session:
            initialized = await session.initialize()
            assert initialized.server_info.name == "berth-demo"
            listed = await session.list_tools()
            assert {entry.name for entry in listed.tools} == {"service_status", "notes_create"}
            created = await session.call_tool("notes_create", {"title": "from python", "priority": "low"})
            assert created.is_error is False
            assert created.structured_content == {"id": created.structured_content["id"], "title": "from python",
                                                  "priority": "low"}
            duplicate = await session.call_tool("notes_create", {"title": "from python"})
            assert duplicate.is_error is True and "already exists" in duplicate.content[0].text
            refused = await session.call_tool("notes_delete", {"note_id": created.structured_content["id"]})
            assert refused.is_error is True and "needs a admin-tier key" in refused.content[0].text
    assert [note.title for note in notes.values()].count("from python") == 1


async def test_a_read_key_sees_and_calls_only_read_tools(base_url):
    async with _http("key-read") as http, streamable_http_client(f"{base_url}/mcp", http_client=http) as streams:
        async with ClientSession(*streams) as session:
            await session.initialize()
            assert [entry.name for entry in (await session.list_tools()).tools] == ["service_status"]
            status = await session.call_tool("service_status", {})
            assert status.structured_content["tier"] == "read"
            refused = await session.call_tool("notes_create", {"title": "nope"})
            assert refused.is_error is True and "needs a standard-tier key; yours is read" in refused.content[0].text


async def test_the_python_client_on_the_2026_protocol(base_url):
    async with _http("key-admin") as http:
        async with Client(streamable_http_client(f"{base_url}/mcp", http_client=http), mode="2026-07-28") as client:
            listed = await client.list_tools()
            assert {entry.name for entry in listed.tools} == {"service_status", "notes_create", "notes_delete"}
            created = await client.call_tool("notes_create", {"title": "modern", "priority": "high"})
            assert created.structured_content["title"] == "modern"
            deleted = await client.call_tool("notes_delete", {"note_id": created.structured_content["id"]})
            assert deleted.structured_content == {"id": created.structured_content["id"], "deleted": True}


async def test_the_python_client_without_a_key_is_told_why(base_url):
    async with _http(None) as http, streamable_http_client(f"{base_url}/mcp", http_client=http) as streams:
        async with ClientSession(*streams) as session:
            with pytest.raises(MCPError, match="missing or unknown API key"):
                await session.initialize()


def test_the_typescript_client_initializes_lists_and_calls(base_url):
    project = node_interop()
    calls = [
        {"name": "notes_create", "arguments": {"title": "from typescript", "priority": "high"}},
        {"name": "notes_create", "arguments": {"title": ""}},
        {"name": "service_status", "arguments": {}},
    ]
    report = run_ts_client(project, f"{base_url}/mcp", {"X-API-Key": "key-standard"}, calls)
    assert "error" not in report, report
    assert report["server"]["name"] == "berth-demo" and report["protocolVersion"] == "2025-11-25"
    assert {entry["name"] for entry in report["tools"]} == {"service_status", "notes_create"}
    created, empty_title, status = (call["result"] for call in report["calls"])
    assert created["isError"] is False and created["structuredContent"]["title"] == "from typescript"
    assert empty_title["isError"] is True and "at least 1 character" in empty_title["content"][0]["text"]
    assert status["structuredContent"]["tier"] == "standard"


def test_the_typescript_client_is_refused_above_its_tier_and_without_a_key(base_url):
    project = node_interop()
    report = run_ts_client(project, f"{base_url}/mcp", {"X-API-Key": "key-read"},
                           [{"name": "notes_create", "arguments": {"title": "ts"}}])
    assert [entry["name"] for entry in report["tools"]] == ["service_status"]
    refused = report["calls"][0]["result"]
    assert refused["isError"] is True and "needs a standard-tier key" in refused["content"][0]["text"]
    anonymous = run_ts_client(project, f"{base_url}/mcp", {}, [])
    assert "401" in anonymous["error"]
