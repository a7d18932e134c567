"""A local MCP registry speaking the official registry API, and a remote MCP server it lists.

    with running_registry() as registry:
        httpx.get(f"{registry.url}/v0.1/servers", params={"version": "latest", "limit": 2})
        registry.fail_on_page = 2           # the next request for page 2 answers HTTP 500
        registry.remote_url, registry.remote_key   # the streamable-HTTP server and its header

The registry (`/v0.1` and `/v0`, stdlib HTTP in a thread):
- `GET /servers?search=&limit=&cursor=&version=&updated_since=` answers
  `{"servers": [{"server": <server.json>, "_meta": {"io.modelcontextprotocol.registry/official":
  {...}}}], "metadata": {"nextCursor", "count"}}`, ordered by name then publication; `search` is
  a case-insensitive substring of the name; `version` is `latest` or an exact version; without
  it every version is listed. Cursors are opaque (base64 of where the last item sorts);
  the last page has no `nextCursor`. `limit` is 1..100 (default 30).
- `GET /servers/{name}/versions` (newest first) and `/servers/{name}/versions/{version|latest}`,
  the name URL-encoded (`io.github.owner%2Fserver`); 404 `{"error": "Server not found"}`.
- `fail_on_page = N` answers the list request for page N (counted in `limit`s from the start)
  with HTTP 500, as a registry that fails mid-pagination; `requests` records every path asked.

What it offers (`SERVERS`): real published packages — `mcp-server-time` from PyPI and
`@modelcontextprotocol/server-everything` from npm, two real versions each — the filesystem
server, the everything server again with a required secret, a package that does not exist, and
a remote entry: the `mcp` SDK server below on its own port, which answers only requests that
carry `X-Test-Api-Key: <remote_key>` (as an installation's headers would).

Run on its own for manual checks: `python -m tests.support.registry_server [--port 7600]`.
"""

import argparse
import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import uvicorn
from mcp.server.mcpserver import MCPServer

SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"
OFFICIAL = "io.modelcontextprotocol.registry/official"
# Real releases (both registries list them): older first, the last one is the latest.
TIME_PACKAGE, TIME_VERSIONS = "mcp-server-time", ("2026.8.18", "2026.10.19")
EVERYTHING_PACKAGE, EVERYTHING_VERSIONS = "@modelcontextprotocol/server-everything", ("2026.1.26", "2026.8.31")
FILESYSTEM_PACKAGE, FILESYSTEM_VERSION = "@modelcontextprotocol/server-filesystem", "2026.8.31"
MISSING_PACKAGE = "@berth-tests-nonexistent/no-such-mcp-server"  # an npm scope no one owns
SECRET_VARIABLE = "BERTH_TEST_SECRET"
REMOTE_KEY_HEADER = "X-Test-Api-Key"
DEFAULT_LIMIT, MAX_LIMIT = 30, 100
PUBLISHED_BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _package(registry_type: str, identifier: str, version: str, **extra) -> dict:
    return {"registryType": registry_type, "identifier": identifier, "version": version,
            "runtimeHint": "uvx" if registry_type == "pypi" else "npx", "transport": {"type": "stdio"}, **extra}


def _server(name: str, description: str, version: str, **extra) -> dict:
    return {"$schema": SCHEMA_URL, "name": name, "description": description, "version": version, **extra}


def registry_servers(remote_url: str) -> list[dict]:
    """The server.json documents the registry offers, every version, in publication order."""
    reference = {"url": "https://github.com/modelcontextprotocol/servers", "source": "github"}
    servers = [
        _server("io.github.modelcontextprotocol/time", "Current time and time zone conversions.", version,
                title="Time", repository={**reference, "subfolder": "src/time"},
                packages=[_package("pypi", TIME_PACKAGE, version)])
        for version in TIME_VERSIONS
    ]
    servers += [
        _server("io.github.modelcontextprotocol/server-everything", "Reference server exercising every MCP feature.",
                version, title="Everything", repository={**reference, "subfolder": "src/everything"},
                packages=[_package("npm", EVERYTHING_PACKAGE, version,
                                   packageArguments=[{"type": "positional", "value": "stdio"}])])
        for version in EVERYTHING_VERSIONS
    ]
    servers += [
        _server("io.github.modelcontextprotocol/server-filesystem", "Reads and writes files in given directories.",
                FILESYSTEM_VERSION, title="Filesystem", repository={**reference, "subfolder": "src/filesystem"},
                packages=[_package("npm", FILESYSTEM_PACKAGE, FILESYSTEM_VERSION, packageArguments=[
                    {"type": "positional", "valueHint": "allowed_directory", "isRequired": True, "isRepeated": True,
                     "format": "filepath", "default": "/sandbox"}])]),
        _server("dev.berth.test/everything-with-secret", "The everything server, given a secret it can print.",
                "1.0.0", packages=[_package("npm", EVERYTHING_PACKAGE, EVERYTHING_VERSIONS[-1], environmentVariables=[
                    {"name": SECRET_VARIABLE, "description": "Any value; the get-env tool shows it.",
                     "isRequired": True, "isSecret": True}])]),
        _server("dev.berth.test/missing-package", "A package no registry has: installing it must fail.", "1.0.0",
                packages=[_package("npm", MISSING_PACKAGE, "1.0.0")]),
        _server("dev.berth.test/remote-echo", "A remote server over streamable HTTP that needs an API key.", "1.0.0",
                title="Remote echo", remotes=[{"type": "streamable-http", "url": remote_url, "headers": [
                    {"name": REMOTE_KEY_HEADER, "description": "The key the remote expects.", "isRequired": True,
                     "isSecret": True}]}]),
    ]
    return servers


@dataclass(frozen=True)
class _Listed:
    server: dict
    published_at: str
    is_latest: bool

    @property
    def position(self) -> tuple[str, str]:
        """Where it sorts (name, then publication): what a cursor remembers."""
        return self.server["name"], self.published_at

    def response(self) -> dict:
        official = {"status": "active", "publishedAt": self.published_at, "updatedAt": self.published_at,
                    "isLatest": self.is_latest}
        return {"server": self.server, "_meta": {OFFICIAL: official}}


class LocalRegistry:
    def __init__(self, servers: list[dict]):
        published = {}
        for index, server in enumerate(servers):  # later in the list: published later
            moment = PUBLISHED_BASE + timedelta(days=index)
            published[server["name"], server["version"]] = moment.isoformat().replace("+00:00", "Z")
        latest = {server["name"]: server["version"] for server in servers}
        self.listed = sorted((_Listed(server, published[server["name"], server["version"]],
                                      latest[server["name"]] == server["version"]) for server in servers),
                             key=lambda item: (item.server["name"], item.published_at))
        self.fail_on_page: int | None = None
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def handle(self, raw_path: str) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(raw_path)
        parts = urlsplit(raw_path)
        segments = parts.path.strip("/").split("/")  # still URL-encoded: a name's `/` is %2F
        if len(segments) < 2 or segments[0] not in ("v0", "v0.1") or segments[1] != "servers":
            return 404, {"error": "Not found"}
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if len(segments) == 2:
            return self._list(query)
        name = unquote(segments[2])
        if len(segments) == 4 and segments[3] == "versions":
            versions = [item for item in reversed(self.listed) if item.server["name"] == name]
            if not versions:
                return 404, {"error": "Server not found"}
            return 200, {"servers": [item.response() for item in versions], "metadata": {"count": len(versions)}}
        if len(segments) == 5 and segments[3] == "versions":
            version = unquote(segments[4])
            for item in self.listed:
                if item.server["name"] == name and (item.server["version"] == version
                                                    or (version == "latest" and item.is_latest)):
                    return 200, item.response()
            return 404, {"error": "Server not found"}
        return 404, {"error": "Not found"}

    def _list(self, query: dict[str, str]) -> tuple[int, dict]:
        try:
            limit = int(query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return 400, {"error": "limit must be an integer"}
        if not 1 <= limit <= MAX_LIMIT:
            return 400, {"error": f"limit must be between 1 and {MAX_LIMIT}"}
        matching = [item for item in self.listed if self._matches(item, query)]
        start = 0
        if query.get("cursor"):
            after = _decode_cursor(query["cursor"])
            if after is None:
                return 400, {"error": "invalid cursor"}
            start = next((index for index, item in enumerate(matching) if item.position > after), len(matching))
        if self.fail_on_page is not None and start // limit + 1 == self.fail_on_page:
            return 500, {"error": f"registry failure injected on page {self.fail_on_page}"}
        page = matching[start:start + limit]
        metadata: dict = {"count": len(page)}
        if start + limit < len(matching):
            metadata["nextCursor"] = base64.urlsafe_b64encode(json.dumps(page[-1].position).encode()).decode()
        return 200, {"servers": [item.response() for item in page], "metadata": metadata}

    @staticmethod
    def _matches(item: _Listed, query: dict[str, str]) -> bool:
        search, version, since = query.get("search"), query.get("version"), query.get("updated_since")
        if search and search.lower() not in item.server["name"].lower():
            return False
        if version == "latest" and not item.is_latest:
            return False
        if version and version != "latest" and item.server["version"] != version:
            return False
        return not since or item.published_at > since


def _decode_cursor(cursor: str) -> tuple[str, str] | None:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        return None
    if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, str) for p in position)):
        return None
    return position[0], position[1]


class _Handler(BaseHTTPRequestHandler):
    server: "_HttpServer"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        status, body = self.server.registry.handle(self.path)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        pass  # the tests read `requests` instead


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: LocalRegistry, port: int):
        super().__init__(("127.0.0.1", port), _Handler)
        self.registry = registry


# --- the remote MCP server ---------------------------------------------------------------------


def remote_mcp_app(api_key: str):
    """A streamable-HTTP MCP server (stateless, JSON answers) that wants `X-Test-Api-Key`."""
    server = MCPServer("berth-test-remote", version="1.0.0", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    app = server.streamable_http_app(stateless_http=True, json_response=True)
    expected = api_key.encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(REMOTE_KEY_HEADER.lower().encode()) != expected:
            body = json.dumps({"error": f"missing or wrong {REMOTE_KEY_HEADER}"}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return guarded


@dataclass
class RunningRegistry:
    url: str
    remote_url: str
    remote_key: str
    registry: LocalRegistry

    @property
    def fail_on_page(self) -> int | None:
        return self.registry.fail_on_page

    @fail_on_page.setter
    def fail_on_page(self, page: int | None) -> None:
        self.registry.fail_on_page = page

    @property
    def requests(self) -> list[str]:
        return list(self.registry.requests)

    @property
    def servers(self) -> list[dict]:
        return [item.server for item in self.registry.listed]


@contextmanager
def running_registry(port: int = 0, remote_port: int = 0) -> Iterator[RunningRegistry]:
    """The registry and its remote server on loopback (0: free ports), until the block ends."""
    remote_key = secrets.token_urlsafe(16)
    remote = uvicorn.Server(uvicorn.Config(remote_mcp_app(remote_key), host="127.0.0.1", port=remote_port,
                                           log_level="warning", access_log=False, lifespan="on"))
    remote_thread = threading.Thread(target=remote.run, name="registry-remote", daemon=True)
    remote_thread.start()
    http = None
    try:
        remote_port = _bound_port(remote)
        remote_url = f"http://127.0.0.1:{remote_port}/mcp"
        registry = LocalRegistry(registry_servers(remote_url))
        http = _HttpServer(registry, port)
        threading.Thread(target=http.serve_forever, name="registry", daemon=True).start()
        yield RunningRegistry(f"http://127.0.0.1:{http.server_address[1]}", remote_url, remote_key, registry)
    finally:
        if http is not None:
            http.shutdown()
            http.server_close()
        remote.should_exit = True
        remote_thread.join(timeout=10)


def _bound_port(server: uvicorn.Server, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while not (server.started and server.servers):
        if time.monotonic() > deadline:
            raise RuntimeError("the remote MCP server did not start")
        time.sleep(0.01)
    return server.servers[0].sockets[0].getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description="a local MCP registry (and its remote server) on loopback")
    parser.add_argument("--port", type=int, default=7600)
    parser.add_argument("--remote-port", type=int, default=0)
    options = parser.parse_args()
    with running_registry(options.port, options.remote_port) as registry:
        print(f"registry: {registry.url}/v0.1/servers\nremote:   {registry.remote_url} "
              f"({REMOTE_KEY_HEADER}: {registry.remote_key})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
