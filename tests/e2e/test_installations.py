"""The marketplace and installations end to end: the real local stack reading the local MCP
registry (tests/support/registry_server.py), a real worker installing real packages from npm and
PyPI into its cache and running them in bubblewrap, files in the stack's S3, a remote MCP server
called by the API, the `berth` CLI, and berth's own `/mcp` tools through the official MCP client."""

import json
import time

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, BerthCli, WorkerProcess, new_account, parse_sse
from tests.support.registry_server import MISSING_PACKAGE, REMOTE_KEY_HEADER, SECRET_VARIABLE, running_registry

pytestmark = pytest.mark.e2e

INSTALL_TIMEOUT = 300  # a first start downloads the package
SECRET_ENTRY = "dev.berth.test/everything-with-secret"
TIME = "io.github.modelcontextprotocol/time"
FILESYSTEM = "io.github.modelcontextprotocol/server-filesystem"
REMOTE = "dev.berth.test/remote-echo"


@pytest.fixture(scope="module")
def registry():
    with running_registry() as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub, registry):
    settings = {**FAST_SETTINGS, "BERTH_MCP_REGISTRY_URLS": json.dumps([registry.url]),
                "BERTH_REGISTRY_PAGE_SIZE": "2", "BERTH_REMOTE_MCP_ALLOW_PRIVATE_ADDRESSES": "true"}
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600, environment=settings)
    running = LocalStack(options).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def owner(stack, hub, tmp_path_factory, registry):
    """A workspace with a worker of its own, and the marketplace refreshed from the local registry."""
    client = httpx.Client(base_url=stack.api_url, timeout=60)
    account = new_account(client)
    data_dir = tmp_path_factory.mktemp("installations-worker") / "worker"
    worker = WorkerProcess(stack, hub, data_dir, account.join_token(), "--max-concurrent-jobs", "8")
    account.worker = worker
    assert worker.runtime_id  # registered
    refreshed = account.post("/api/marketplace/refresh")
    assert refreshed.status_code == 200 and refreshed.json()["failed"] == [], refreshed.text
    yield account
    worker.stop()
    client.close()


def _install(owner, entry_id, config=None) -> dict:
    response = owner.post(f"/api/marketplace/tools/{entry_id}/install", json={"config": config or {}})
    assert response.status_code == 201, response.text
    return response.json()


def _tools(owner, installation_id, timeout=INSTALL_TIMEOUT) -> httpx.Response:
    """GET tools until the server has started (each request waits up to 20 s), or it failed."""
    deadline = time.monotonic() + timeout
    while True:
        response = owner.get(f"/api/installations/{installation_id}/tools", params={"wait_seconds": 20})
        if response.status_code != 409 or "start" not in response.json()["error"] or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def _call(owner, installation_id, name, arguments=None) -> dict:
    response = owner.post(f"/api/installations/{installation_id}/tools/call",
                          json={"name": name, "arguments": arguments or {}})
    assert response.status_code == 200, response.text
    return response.json()


def _patch(owner, installation_id, config) -> httpx.Response:
    return owner.client.patch(f"/api/installations/{installation_id}", headers=owner.headers, json={"config": config})


def _text(answer: dict) -> str:
    return " ".join(block.get("text", "") for block in answer["result"].get("content", []))


def _events_so_far(owner, job_id) -> list[dict]:
    """The job's events so far: one stream window (the job may still run)."""
    with owner.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=owner.headers) as response:
        return [frame["data"] for frame in parse_sse(response.iter_lines()) if frame["event"] != "end"]


def _package_events(owner, job_id) -> list[dict]:
    return [event["data"] for event in _events_so_far(owner, job_id) if event["step"] == "package"]


def test_a_refresh_through_the_stack_keeps_what_it_had_when_the_registry_fails_mid_pagination(owner, registry):
    listed = owner.get("/api/registry", params={"limit": 100}).json()
    registry.fail_on_page = 2
    try:
        failed = owner.post("/api/marketplace/refresh").json()
    finally:
        registry.fail_on_page = None
    kept = owner.get("/api/registry", params={"limit": 100}).json()

    assert failed["failed"] == [registry.url]
    assert failed["registries"][0]["error"].startswith("page 2 (cursor ") and "HTTP 500" in failed["registries"][0][
        "error"]
    assert [entry["id"] for entry in kept["entries"]] == [entry["id"] for entry in listed["entries"]]
    assert len(kept["entries"]) == len({server["name"] for server in registry.servers})
    found = owner.get("/api/marketplace/tools", params={"q": "everything secret"}).json()["tools"]
    assert [tool["id"] for tool in found] == [SECRET_ENTRY]


def test_a_required_secret_reaches_the_server_and_shows_nowhere_else(owner, stack, capfd):
    secret = f"berth-e2e-secret-{time.monotonic_ns()}"
    missing = owner.post(f"/api/marketplace/tools/{SECRET_ENTRY}/install", json={"config": {}})
    installed = _install(owner, SECRET_ENTRY, {SECRET_VARIABLE: secret})

    listed = _tools(owner, installed["id"])
    shown = _call(owner, installed["id"], "get-env")
    again = owner.get(f"/api/installations/{installed['id']}").json()
    sandbox_id = again["sandbox_id"]
    seen = [missing.text, json.dumps(installed), listed.text, json.dumps(again),
            owner.get("/api/installations").text, owner.get(f"/v1/jobs/{sandbox_id}").text,
            owner.get(f"/api/sandboxes/{sandbox_id}").text, owner.get("/api/containers").text,
            json.dumps(_events_so_far(owner, sandbox_id))]

    assert missing.status_code == 422 and SECRET_VARIABLE in missing.json()["error"]
    assert listed.status_code == 200, listed.text
    assert "get-env" in {tool["name"] for tool in listed.json()["tools"]}
    assert secret in _text(shown)  # the server has it
    assert not [text for text in seen if secret in text]  # no answer does
    items = stack.services.store.table.scan_all()
    assert not [item for item in items if secret in json.dumps(item, default=str)]
    logged = capfd.readouterr()
    assert secret not in logged.out + logged.err + owner.worker.log_path.read_text()

    changed = _patch(owner, installed["id"], {SECRET_VARIABLE: secret + "-2"})
    assert changed.status_code == 200 and changed.json()["restarted"] is True, changed.text
    assert changed.json()["sandbox_id"] != sandbox_id
    assert _tools(owner, installed["id"]).status_code == 200
    assert f"{secret}-2" in _text(_call(owner, installed["id"], "get-env"))
    assert owner.job(sandbox_id)["status"] == "cancelled"  # the old server stopped
    assert owner.delete(f"/api/installations/{installed['id']}").status_code == 200


def test_the_same_package_started_again_installs_nothing_and_a_patch_restarts_with_the_new_config(owner):
    installed = _install(owner, TIME, {"timezone": "Europe/Paris"})
    assert _tools(owner, installed["id"]).status_code == 200
    first = owner.get(f"/api/installations/{installed['id']}").json()["sandbox_id"]
    paris = _call(owner, installed["id"], "get_current_time", {"timezone": "Asia/Tokyo"})

    changed = _patch(owner, installed["id"], {"timezone": "America/Lima"})
    assert changed.status_code == 200 and changed.json()["restarted"] is True
    assert _tools(owner, installed["id"]).status_code == 200
    second = owner.get(f"/api/installations/{installed['id']}").json()["sandbox_id"]
    converted = _call(owner, installed["id"], "convert_time",
                      {"source_timezone": "America/Lima", "time": "12:00", "target_timezone": "UTC"})

    assert paris["ok"] and "Asia/Tokyo" in _text(paris)
    assert converted["ok"] and "17:00" in _text(converted)
    assert first != second
    assert [(e["stage"], e["cached"]) for e in _package_events(owner, first)][-1] == ("done", False)
    assert [(e["stage"], e["cached"]) for e in _package_events(owner, second)] == [("done", True)]
    job = owner.job(second)
    assert job["payload"]["package"]["packageArguments"][0]["value"] == "America/Lima"
    containers = owner.get("/api/containers").json()["containers"]
    assert {"id": second, "installation_id": installed["id"]}.items() <= next(
        c for c in containers if c["id"] == second).items()

    deleted = owner.delete(f"/api/installations/{installed['id']}")
    assert deleted.status_code == 200
    assert owner.job(second)["status"] == "cancelled"
    assert owner.get(f"/api/installations/{installed['id']}").status_code == 404


def test_uploaded_files_are_read_only_to_the_server_under_its_files_directory(owner):
    installed = _install(owner, FILESYSTEM)
    escape = owner.post(f"/api/installations/{installed['id']}/files",
                        files=[("files", ("../escape.txt", b"x", "text/plain"))])
    uploaded = owner.post(f"/api/installations/{installed['id']}/files",
                          files=[("files", ("notes.txt", b"remember the milk\n", "text/plain"))])

    assert escape.status_code == 422 and "file name refused" in escape.json()["error"]
    assert uploaded.status_code == 200 and uploaded.json()["restarted"] is False
    assert _tools(owner, installed["id"]).status_code == 200
    read = _call(owner, installed["id"], "read_text_file", {"path": "/sandbox/files/notes.txt"})
    written = _call(owner, installed["id"], "write_file", {"path": "/sandbox/files/notes.txt", "content": "changed"})

    assert read["ok"] and "remember the milk" in _text(read)
    assert not written["ok"]  # read-only
    again = owner.post(f"/api/installations/{installed['id']}/files",
                       files=[("files", ("more.txt", b"and the eggs", "text/plain"))])
    assert again.status_code == 200 and again.json()["restarted"] is True
    assert _tools(owner, installed["id"]).status_code == 200
    assert "and the eggs" in _text(_call(owner, installed["id"], "read_text_file",
                                         {"path": "/sandbox/files/more.txt"}))
    assert owner.delete(f"/api/installations/{installed['id']}").status_code == 200


def test_a_package_that_does_not_exist_is_a_clear_error(owner):
    installed = _install(owner, "dev.berth.test/missing-package")

    failed = _tools(owner, installed["id"])

    assert failed.status_code == 502, failed.text
    assert failed.json()["error"].startswith("the server did not start: the package did not install: ")
    assert "npm error 404" in failed.json()["error"] and MISSING_PACKAGE in failed.json()["error"]
    assert owner.get(f"/api/installations/{installed['id']}").json()["last_error"] == failed.json()["error"]


def test_a_remote_entry_is_called_by_the_api_with_the_installations_header(owner, registry):
    installed = _install(owner, REMOTE, {REMOTE_KEY_HEADER: registry.remote_key})

    tools = _tools(owner, installed["id"])
    echoed = _call(owner, installed["id"], "echo", {"text": "through berth"})

    assert installed["kind"] == "remote" and installed["secrets"][0]["name"] == REMOTE_KEY_HEADER
    assert {tool["name"] for tool in tools.json()["tools"]} == {"echo", "add"}
    assert echoed["ok"] and _text(echoed) == "through berth"
    assert owner.get(f"/api/installations/{installed['id']}").json()["sandbox_id"] is None


def test_another_workspaces_installation_is_404(owner, stack):
    installed = _install(owner, TIME)
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        stranger = new_account(client)
        for method, path in (("get", ""), ("get", "/tools"), ("delete", "")):
            assert getattr(stranger, method)(f"/api/installations/{installed['id']}{path}").status_code == 404
        assert stranger.post(f"/api/installations/{installed['id']}/tools/call",
                             json={"name": "get_current_time"}).status_code == 404
    assert owner.delete(f"/api/installations/{installed['id']}").status_code == 200


def test_the_cli_searches_installs_lists_tools_and_calls_one(owner, stack, tmp_path):
    berth = BerthCli(tmp_path / "berth-config", stack.api_url)
    key = owner.post("/api/auth/keys/generate", json={"name": "cli", "tier": "standard"}).json()["key"]
    environment = {"BERTH_API_URL": stack.api_url, "BERTH_API_KEY": key}

    def run(*args, stdin=None):
        done = berth(*args, stdin=stdin, env=environment)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    found = run("marketplace", "search", "time")
    shown = run("marketplace", "show", TIME)
    installed = json.loads(run("install", TIME, "--set", "timezone=Asia/Tokyo", "--json"))
    listed = run("tools", "list", installed["id"])
    called = run("tools", "call", installed["id"], "get_current_time", "--arg", "timezone=Europe/Oslo")
    mine = run("installations", "list")
    one = run("installations", "get", installed["id"])
    run("installations", "delete", installed["id"])

    assert TIME in found and "timezone" in shown
    assert "get_current_time" in listed and "Europe/Oslo" in called
    assert installed["id"] in mine and "timezone=Asia/Tokyo" in one
    assert owner.get(f"/api/installations/{installed['id']}").status_code == 404


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _call_once_started(session: ClientSession, arguments: dict):
    """call_installed_tool until its server is past starting: the first call starts it (a first
    start installs the package), and each call waits briefly for it, saying so while it starts."""
    deadline = time.monotonic() + INSTALL_TIMEOUT
    while True:
        called = await session.call_tool("call_installed_tool", arguments)
        if not (called.is_error and "is starting" in called.content[0].text) or time.monotonic() > deadline:
            return called


@pytest.mark.anyio
async def test_an_agent_searches_installs_and_calls_an_installed_servers_tool_over_mcp(owner, stack):
    """berth's own `/mcp` through the official Python client: the marketplace and installation
    tools call the services the routes above do, so the installation is theirs too."""
    key = owner.post("/api/auth/keys/generate", json={"name": "agent", "tier": "standard"}).json()["key"]
    async with httpx2.AsyncClient(headers={"X-API-Key": key}, timeout=60) as http, \
            streamable_http_client(f"{stack.api_url}/mcp", http_client=http) as streams, \
            ClientSession(*streams) as session:
        await session.initialize()
        found = await session.call_tool("search_marketplace", {"query": "time zone"})
        shown = await session.call_tool("get_tool_details", {"entry_id": TIME})
        made = await session.call_tool("install_tool", {"entry_id": TIME, "config": {"timezone": "Asia/Tokyo"}})
        installation_id = made.structured_content["installation"]["id"]
        called = await _call_once_started(session, {"installation_id": installation_id, "name": "get_current_time",
                                                     "arguments": {"timezone": "Europe/Oslo"}})
        listed = await session.call_tool("list_installations", {})

        missing = await session.call_tool("install_tool", {"entry_id": "dev.berth.test/missing-package"})
        missing_id = missing.structured_content["installation"]["id"]
        not_started = await _call_once_started(session, {"installation_id": missing_id, "name": "anything"})

    assert TIME in [entry["id"] for entry in found.structured_content["tools"]]
    assert [each["name"] for each in shown.structured_content["inputs"]] == ["timezone"]
    assert made.is_error is False and made.structured_content["installation"]["config"] == {"timezone": "Asia/Tokyo"}
    assert called.is_error is False, called.content
    assert called.structured_content["ok"] is True and "Europe/Oslo" in json.dumps(called.structured_content["result"])
    sandbox_id = owner.get(f"/api/installations/{installation_id}").json()["sandbox_id"]
    assert sandbox_id is not None and owner.job(sandbox_id)["payload"]["package"]["identifier"] == "mcp-server-time"
    mine = next(each for each in listed.structured_content["installations"] if each["id"] == installation_id)
    assert mine["sandbox_id"] == sandbox_id
    # A server that did not start is a tool error in the runtime's words, as REST answers them (502).
    assert not_started.is_error is True, not_started.content
    assert "the server did not start: the package did not install: " in not_started.content[0].text
    assert MISSING_PACKAGE in not_started.content[0].text
    for made_here in (installation_id, missing_id):
        assert owner.delete(f"/api/installations/{made_here}").status_code == 200
