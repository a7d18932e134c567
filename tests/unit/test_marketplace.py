"""The marketplace and installations through the app's routes, on in-process moto, with the local
MCP registry (tests/support/registry_server.py) and its remote server: everything that needs no
runtime. The runtime's part (servers started from packages, files, calls) is in
tests/e2e/test_installations.py."""

import json
import time

import pytest

from app import composition
from app.store import keys
from tests.conftest import bearer, signup
from tests.support.registry_server import REMOTE_KEY_HEADER, SECRET_VARIABLE, running_registry

SECRET_ENTRY = "dev.berth.test/everything-with-secret"
TIME = "io.github.modelcontextprotocol/time"
SECRET_VALUE = "the-secret-value-7f3a9c2e1b"


@pytest.fixture(scope="module")
def running():
    with running_registry() as started:
        yield started


@pytest.fixture
def registry(running):
    """The module's registry, as it started again after each test."""
    listed = list(running.registry.listed)
    yield running
    running.registry.listed, running.fail_on_page = listed, None


@pytest.fixture
def marketplace(client, registry, monkeypatch):
    """The app reading the local registry two servers a page (so failures can come mid-way)."""
    monkeypatch.setenv("BERTH_MCP_REGISTRY_URLS", json.dumps([registry.url]))
    monkeypatch.setenv("BERTH_REGISTRY_PAGE_SIZE", "2")
    monkeypatch.setenv("BERTH_REMOTE_MCP_ALLOW_PRIVATE_ADDRESSES", "true")
    composition.reset()
    composition.services().objects.ensure_bucket()
    return client


@pytest.fixture
def token(marketplace):
    return signup(marketplace)["token"]


def _workspace(client, token) -> str:
    return client.get("/v1/auth/me", headers=bearer(token)).json()["user"]["workspace_id"]


def _refresh(client, token):
    response = client.post("/api/marketplace/refresh", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def _install(client, token, entry_id, config=None, **extra):
    headers = {**bearer(token), **extra.pop("headers", {})}
    return client.post(f"/api/marketplace/tools/{entry_id}/install", headers=headers,
                       json={"config": config or {}, **extra})


def test_a_refresh_stores_every_latest_server_of_the_registry_page_by_page(marketplace, registry, token):
    report = _refresh(marketplace, token)

    (registry_report,) = report["registries"]
    latest = {server["name"] for server in registry.servers}
    assert registry_report["ok"] and registry_report["added"] == len(latest) and registry_report["pages"] >= 3
    assert report["failed"] == [] and registry_report["invalid"] == []
    assert all("limit=2" in path and "version=latest" in path for path in registry.requests)
    listed = marketplace.get("/api/registry", headers=bearer(token), params={"limit": 100}).json()
    assert {entry["id"] for entry in listed["entries"]} == latest
    everything = next(e for e in listed["entries"] if e["id"] == "io.github.modelcontextprotocol/server-everything")
    assert everything["origin"] == registry.url and everything["version"] == "2026.8.31"
    assert listed["registries"][0]["url"] == registry.url and listed["registries"][0]["error"] is None


def test_a_registry_failing_mid_pagination_keeps_what_berth_had_and_the_answer_says_where(marketplace, registry,
                                                                                          token):
    before = _refresh(marketplace, token)["registries"][0]["entries"]
    registry.fail_on_page = 2

    report = _refresh(marketplace, token)

    assert report["failed"] == [registry.url]
    failed = report["registries"][0]
    assert not failed["ok"] and failed["entries"] == before
    assert failed["error"].startswith("page 2 (cursor ") and "HTTP 500" in failed["error"]
    kept = marketplace.get("/api/registry", headers=bearer(token), params={"limit": 100}).json()
    assert len(kept["entries"]) == before
    assert "page 2" in kept["registries"][0]["error"] and kept["registries"][0]["succeeded_at"]


def test_entries_a_registry_no_longer_lists_go_and_versions_are_remembered(marketplace, registry, token):
    _refresh(marketplace, token)
    time_versions = marketplace.get(f"/api/registry/{TIME}", headers=bearer(token)).json()
    registry.registry.listed = [item for item in registry.registry.listed
                                if item.server["name"] != "dev.berth.test/missing-package"]

    report = _refresh(marketplace, token)["registries"][0]

    assert report["removed"] == 1 and report["added"] == 0
    assert marketplace.get("/api/registry/dev.berth.test/missing-package", headers=bearer(token)).status_code == 404
    assert time_versions["versions"] == ["2026.10.19"] and time_versions["document"]["name"] == TIME


def test_search_finds_curated_and_registry_entries_by_words_type_transport_and_tag(marketplace, token):
    _refresh(marketplace, token)

    def search(**params):
        answer = marketplace.get("/api/marketplace/tools", headers=bearer(token), params=params)
        assert answer.status_code == 200, answer.text
        return [tool["id"] for tool in answer.json()["tools"]]

    assert search(q="secret") == [SECRET_ENTRY]
    assert TIME in search(registry_type="pypi")
    assert search(transport="streamable-http") == ["dev.berth.test/remote-echo", "io.github.github/github-mcp-server"]
    assert search(tag="search") == ["io.github.brave/brave-search-mcp-server"]
    first = marketplace.get("/api/marketplace/tools", headers=bearer(token), params={"limit": 3}).json()
    second = marketplace.get("/api/marketplace/tools", headers=bearer(token),
                             params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert len(first["tools"]) == 3 and not {t["id"] for t in first["tools"]} & {t["id"] for t in second["tools"]}
    assert marketplace.get("/api/marketplace/tools", headers=bearer(token), params={"cursor": "%%"}).status_code == 400


def test_an_entry_shows_what_an_installation_takes(marketplace, token):
    _refresh(marketplace, token)
    detail = marketplace.get(f"/api/marketplace/tools/{SECRET_ENTRY}", headers=bearer(token)).json()

    assert detail["install_kind"] == "package" and detail["origin"].startswith("http://127.0.0.1")
    assert detail["inputs"] == [{"name": SECRET_VARIABLE, "kind": "env", "required": True, "secret": True,
                                 "description": "Any value; the get-env tool shows it.", "default": None,
                                 "choices": [], "format": "string"}]
    curated = marketplace.get(f"/api/marketplace/tools/{TIME}", headers=bearer(token)).json()
    assert curated["origin"] == "curated" and curated["tags"] == ["time", "utilities"]
    assert marketplace.get("/api/marketplace/tools/io.github.nobody/nothing", headers=bearer(token)).status_code == 404


def test_only_one_refresh_runs_at_a_time(marketplace, token):
    assert composition.services().store.marketplace.take_refresh_lease("someone-else", time.time(), 60)
    busy = marketplace.post("/api/marketplace/refresh", headers=bearer(token))
    assert busy.status_code == 409 and "already running" in busy.json()["error"]


def test_an_install_missing_a_required_value_is_422_naming_it_and_stores_nothing(marketplace, token):
    _refresh(marketplace, token)
    missing = _install(marketplace, token, SECRET_ENTRY)
    unknown = _install(marketplace, token, SECRET_ENTRY, {SECRET_VARIABLE: "x", "OTHER": "y"})

    assert missing.status_code == 422 and SECRET_VARIABLE in missing.json()["error"]
    assert unknown.status_code == 422 and "unknown setting OTHER" in unknown.json()["error"]
    assert marketplace.get("/api/installations", headers=bearer(token)).json()["installations"] == []


def test_a_secret_is_sealed_shown_as_a_hint_and_in_no_item_in_clear(marketplace, token):
    _refresh(marketplace, token)
    installed = _install(marketplace, token, SECRET_ENTRY, {SECRET_VARIABLE: SECRET_VALUE})

    assert installed.status_code == 201, installed.text
    view = installed.json()
    assert view["state"] == "ready" and view["secrets"] == [{"name": SECRET_VARIABLE, "hint": f"…{SECRET_VALUE[-4:]}"}]
    assert view["config"] == {} and "GET /api/installations/" in view["next"]
    shown = marketplace.get(f"/api/installations/{view['id']}", headers=bearer(token)).text
    listed = marketplace.get("/api/installations", headers=bearer(token)).text
    assert SECRET_VALUE not in installed.text + shown + listed
    items = composition.services().store.table.scan_all()
    assert not [item for item in items if SECRET_VALUE in json.dumps(item, default=str)]
    item = next(item for item in items if item["sk"] == f"{keys.INSTALLATION}{view['id']}")
    assert item["secrets"].startswith("e1.")


def test_another_workspaces_installation_is_404(marketplace, token):
    _refresh(marketplace, token)
    installation_id = _install(marketplace, token, TIME).json()["id"]
    other = signup(marketplace, email="grace@example.com", name="Grace")["token"]

    for method, path in (("get", ""), ("delete", ""), ("get", "/tools"), ("patch", "")):
        kwargs = {"json": {"config": {"timezone": "UTC"}}} if method == "patch" else {}
        answer = getattr(marketplace, method)(f"/api/installations/{installation_id}{path}", headers=bearer(other),
                                              **kwargs)
        assert answer.status_code == 404, (method, path, answer.text)
    assert marketplace.get("/api/installations", headers=bearer(other)).json()["installations"] == []


def test_a_per_user_entry_installs_for_the_caller_and_waits_for_their_sign_in(marketplace, token):
    github = "io.github.github/github-mcp-server"
    installed = _install(marketplace, token, github).json()

    assert installed["scope"] == "user" and installed["user_id"].startswith("usr_")
    assert installed["state"] == "needs_oauth" and installed["pending"] == ["token"]
    assert "OAuth" in installed["next"]
    waiting = marketplace.get(f"/api/installations/{installed['id']}/tools", headers=bearer(token))
    assert waiting.status_code == 409 and "sign-in" in waiting.json()["error"]
    other = _install(marketplace, token, github, headers={"X-User-Id": "usr_someone_else"})
    assert other.status_code == 403
    mine = marketplace.get("/api/installations", headers=bearer(token),
                           params={"user_id": installed["user_id"]}).json()["installations"]
    assert [found["id"] for found in mine] == [installed["id"]]


def test_a_patch_checks_the_new_values_and_keeps_the_rest(marketplace, token):
    _refresh(marketplace, token)
    installation_id = _install(marketplace, token, SECRET_ENTRY, {SECRET_VARIABLE: "first-value"}).json()["id"]

    refused = marketplace.patch(f"/api/installations/{installation_id}", headers=bearer(token),
                                json={"config": {SECRET_VARIABLE: None}})
    changed = marketplace.patch(f"/api/installations/{installation_id}", headers=bearer(token),
                                json={"config": {SECRET_VARIABLE: "a-second-and-longer-value"}})

    assert refused.status_code == 422 and SECRET_VARIABLE in refused.json()["error"]
    assert changed.status_code == 200 and changed.json()["restarted"] is False
    assert changed.json()["secrets"] == [{"name": SECRET_VARIABLE, "hint": "…alue"}]
    servers = composition.services().installation_servers
    installation = composition.services().store.installations.get(_workspace(marketplace, token), installation_id)
    assert servers.secret_values(installation) == {SECRET_VARIABLE: "a-second-and-longer-value"}


def test_files_need_plain_names_and_are_kept_in_the_bucket(marketplace, token):
    installation_id = _install(marketplace, token, "io.github.modelcontextprotocol/server-filesystem").json()["id"]

    def upload(name, body=b"hello"):
        return marketplace.post(f"/api/installations/{installation_id}/files", headers=bearer(token),
                                files=[("files", (name, body, "text/plain"))])

    for name in ("../escape.txt", "a/b.txt", "..", ".hidden", "x\\y"):
        refused = upload(name)
        assert refused.status_code == 422 and "file name refused" in refused.json()["error"], name
    too_big = upload("big.bin", b"x" * 1_000_001)
    stored = upload("notes.txt", b"remember the milk")

    assert too_big.status_code == 413
    assert stored.status_code == 200, stored.text
    (file,) = stored.json()["files"]
    assert (file["name"], file["size_bytes"], file["path"]) == ("notes.txt", 17, "/sandbox/files/notes.txt")
    services = composition.services()
    key = f"installations/{_workspace(marketplace, token)}/{installation_id}/notes.txt"
    body = services.aws.client("s3").get_object(Bucket=services.settings.files_bucket, Key=key)["Body"].read()
    assert body == b"remember the milk"

    assert marketplace.delete(f"/api/installations/{installation_id}", headers=bearer(token)).status_code == 200
    assert services.aws.client("s3").list_objects_v2(Bucket=services.settings.files_bucket).get("KeyCount") == 0


def test_a_remote_entry_installs_as_a_connection_the_api_calls_with_its_headers(marketplace, registry, token):
    _refresh(marketplace, token)
    remote = "dev.berth.test/remote-echo"
    missing = _install(marketplace, token, remote)
    installed = _install(marketplace, token, remote, {REMOTE_KEY_HEADER: registry.remote_key}).json()
    wrong = _install(marketplace, token, remote, {REMOTE_KEY_HEADER: "not-the-key"}).json()

    tools = marketplace.get(f"/api/installations/{installed['id']}/tools", headers=bearer(token))
    called = marketplace.post(f"/api/installations/{installed['id']}/tools/call", headers=bearer(token),
                              json={"name": "add", "arguments": {"a": 2, "b": 40}})
    refused = marketplace.get(f"/api/installations/{wrong['id']}/tools", headers=bearer(token))

    assert missing.status_code == 422 and REMOTE_KEY_HEADER in missing.json()["error"]
    assert installed["kind"] == "remote" and installed["sandbox_id"] is None
    assert {tool["name"] for tool in tools.json()["tools"]} == {"echo", "add"}
    assert called.json() == {"success": True, "ok": True, "result": {"content": [{"type": "text", "text": "42"}],
                                                    "structuredContent": {"result": 42}, "isError": False}}
    assert refused.status_code == 502
    assert registry.remote_key not in tools.text + called.text + json.dumps(installed)


def test_a_remote_at_a_private_address_is_refused_unless_allowed(marketplace, registry, token, monkeypatch):
    _refresh(marketplace, token)
    installed = _install(marketplace, token, "dev.berth.test/remote-echo",
                         {REMOTE_KEY_HEADER: registry.remote_key}).json()
    monkeypatch.setenv("BERTH_REMOTE_MCP_ALLOW_PRIVATE_ADDRESSES", "false")
    composition.reset()

    refused = marketplace.get(f"/api/installations/{installed['id']}/tools", headers=bearer(token))

    assert refused.status_code == 403 and "https" in refused.json()["error"]


def test_the_scheduled_refresh_reads_the_registries_within_the_time_its_invocation_has(marketplace, registry):
    import functions.marketplace_refresh

    class LambdaContext:
        def get_remaining_time_in_millis(self) -> int:
            return 300_000

    report = functions.marketplace_refresh.handler({"source": "aws.events"}, LambdaContext())

    assert report["failed"] == [] and report["registries"][0]["ok"]
    assert report["registries"][0]["entries"] == len({server["name"] for server in registry.servers})
    assert functions.marketplace_refresh.handler({}, LambdaContext())["registries"][0]["added"] == 0  # nothing new


def test_ids_longer_than_any_berth_makes_are_refused_before_the_table_is_asked(marketplace, token):
    for path in (f"/api/marketplace/tools/io.github.x/{'y' * 300}", f"/api/registry/{'z' * 300}",
                 f"/api/installations/ins_{'0' * 200}", f"/api/installations/ins_{'0' * 200}/tools"):
        answer = marketplace.get(path, headers=bearer(token))
        assert answer.status_code == 422 and answer.json()["success"] is False, path
