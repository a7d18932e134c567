"""The local MCP registry the tests start: the official registry API's shapes, cursor pagination,
a failure mid-pagination on demand, and the remote MCP server it lists."""

from urllib.parse import quote

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.registry_server import (
    EVERYTHING_PACKAGE,
    EVERYTHING_VERSIONS,
    OFFICIAL,
    REMOTE_KEY_HEADER,
    TIME_PACKAGE,
    TIME_VERSIONS,
    running_registry,
)

TIME_SERVER = "io.github.modelcontextprotocol/time"


@pytest.fixture(scope="module")
def registry():
    with running_registry() as running:
        yield running


@pytest.fixture
def client(registry):
    registry.fail_on_page = None
    with httpx.Client(base_url=registry.url, timeout=10) as http:
        yield http


def all_pages(client, **params) -> list[dict]:
    servers, cursor = [], None
    while True:
        answer = client.get("/v0.1/servers", params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["metadata"]["count"] == len(body["servers"])
        servers += body["servers"]
        cursor = body["metadata"].get("nextCursor")
        if not cursor:
            return servers


def test_pages_of_two_list_every_version_once_in_order(client, registry):
    listed = all_pages(client, limit=2)

    assert [(item["server"]["name"], item["server"]["version"]) for item in listed] == \
        [(server["name"], server["version"]) for server in registry.servers]
    assert len(listed) == 8


def test_latest_versions_only_and_the_official_metadata(client):
    listed = all_pages(client, version="latest", limit=3)

    versions = {item["server"]["name"]: item["server"]["version"] for item in listed}
    assert versions[TIME_SERVER] == TIME_VERSIONS[-1]
    assert versions["io.github.modelcontextprotocol/server-everything"] == EVERYTHING_VERSIONS[-1]
    assert len(versions) == len(listed) == 6
    official = listed[0]["_meta"][OFFICIAL]
    assert official["isLatest"] is True and official["status"] == "active"
    assert official["publishedAt"].endswith("Z")


def test_the_packages_listed_are_real_published_ones(client):
    packages = {(package["registryType"], package["identifier"], package["version"])
                for item in all_pages(client) for package in item["server"].get("packages", [])}

    assert {("pypi", TIME_PACKAGE, version) for version in TIME_VERSIONS} <= packages
    assert {("npm", EVERYTHING_PACKAGE, version) for version in EVERYTHING_VERSIONS} <= packages


def test_search_is_a_substring_of_the_name_in_any_case(client):
    names = {item["server"]["name"] for item in all_pages(client, search="TIME")}

    assert names == {TIME_SERVER}


def test_an_exact_version_filter(client):
    listed = all_pages(client, version=TIME_VERSIONS[0])

    assert [(item["server"]["name"], item["server"]["version"]) for item in listed] == [(TIME_SERVER, TIME_VERSIONS[0])]


def test_versions_of_a_server_by_its_url_encoded_name_newest_first(client):
    answer = client.get(f"/v0.1/servers/{quote(TIME_SERVER, safe='')}/versions")

    assert answer.status_code == 200
    assert [item["server"]["version"] for item in answer.json()["servers"]] == list(reversed(TIME_VERSIONS))


def test_one_version_or_latest_and_404_for_what_is_not_there(client):
    encoded = quote(TIME_SERVER, safe="")

    assert client.get(f"/v0.1/servers/{encoded}/versions/latest").json()["server"]["version"] == TIME_VERSIONS[-1]
    assert client.get(f"/v0.1/servers/{encoded}/versions/{TIME_VERSIONS[0]}").json()["_meta"][OFFICIAL]["isLatest"] \
        is False
    missing = client.get(f"/v0.1/servers/{encoded}/versions/0.0.1")
    assert (missing.status_code, missing.json()) == (404, {"error": "Server not found"})
    assert client.get("/v0.1/servers/io.example%2Fnothing/versions").status_code == 404


def test_the_v0_prefix_answers_too(client):
    assert client.get("/v0/servers", params={"limit": 1}).json()["metadata"]["count"] == 1


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "not-a-cursor"}])
def test_bad_paging_parameters_are_400(client, params):
    answer = client.get("/v0.1/servers", params=params)

    assert answer.status_code == 400
    assert "error" in answer.json()


def test_a_registry_that_fails_mid_pagination(client, registry):
    registry.fail_on_page = 2
    first = client.get("/v0.1/servers", params={"limit": 3})
    assert first.status_code == 200

    second = client.get("/v0.1/servers", params={"limit": 3, "cursor": first.json()["metadata"]["nextCursor"]})

    assert second.status_code == 500
    assert "page 2" in second.json()["error"]
    assert registry.requests[-1].startswith("/v0.1/servers?limit=3&cursor=")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_remote_entry_is_a_real_mcp_server_that_wants_its_header(registry):
    remote = next(item for item in registry.servers if item.get("remotes"))["remotes"][0]
    assert remote["url"] == registry.remote_url
    assert remote["headers"][0]["name"] == REMOTE_KEY_HEADER

    async with httpx.AsyncClient() as anonymous:
        refused = await anonymous.post(registry.remote_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401

    async with httpx.AsyncClient(headers={REMOTE_KEY_HEADER: registry.remote_key}) as keyed, \
            streamable_http_client(registry.remote_url, http_client=keyed) as (read, write, *_), \
            ClientSession(read, write) as session:
        await session.initialize()
        tools = {tool.name for tool in (await session.list_tools()).tools}
        result = await session.call_tool("add", {"a": 2, "b": 3})
    assert tools == {"echo", "add"}
    assert result.structured_content == {"result": 5}
