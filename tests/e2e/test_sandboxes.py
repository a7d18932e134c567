"""Sandboxes through both API surfaces, on real workers, bubblewrap and real MCP servers: the
echo server written with the SDK here, server-everything as published on npm, and the catalog's
packages installed by the worker from PyPI and npm."""

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from app.catalog import curated_servers
from app.contract.packages import PackageSpec
from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, WorkerProcess, new_account
from tests.support.registry_server import MISSING_PACKAGE
from tests.support.sandbox_fixtures import ECHO_SERVER, EVERYTHING_ENTRY, NPM_PREFIX, call_directly, python_command

pytestmark = pytest.mark.e2e

ECHO = f"python3 {ECHO_SERVER}"
EVERYTHING = f"node {NPM_PREFIX / EVERYTHING_ENTRY}"
TOOL_CALL_TIMEOUT = 4
INSTALL_TIMEOUT = 300  # a first start downloads the package


def _catalog_package(identifier: str) -> PackageSpec:
    return next(package for entry in curated_servers() for package in entry.document.packages
                if package.identifier == identifier)


TIME = _catalog_package("mcp-server-time")
EVERYTHING_FROM_NPM = _catalog_package("@modelcontextprotocol/server-everything")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    settings = {**FAST_SETTINGS, "BERTH_TOOL_CALL_TIMEOUT_SECONDS": str(TOOL_CALL_TIMEOUT)}
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600, environment=settings)
    running = LocalStack(options).start()
    yield running
    running.stop()


def _workspace_with_worker(stack, hub, tmp_path_factory, direct_control: bool):
    """A workspace with one worker whose sandboxes can see the test servers (read-only)."""
    client = httpx.Client(base_url=stack.api_url, timeout=30)
    account = new_account(client)
    data_dir = tmp_path_factory.mktemp("sandbox-worker") / "worker"
    worker = WorkerProcess(stack, hub, data_dir, account.join_token(), "--max-concurrent-jobs", "8",
                           "--sandbox-tool-dir", str(ECHO_SERVER.parent), "--sandbox-tool-dir", str(NPM_PREFIX),
                           direct_control=direct_control)
    account.worker = worker
    account.worker_data_dir = data_dir
    assert worker.runtime_id  # registered
    yield account
    worker.stop()
    client.close()


@pytest.fixture(scope="module")
def owner(stack, everything_server, tmp_path_factory, hub):
    """Its worker serves control requests directly (the API falls back to the queue)."""
    yield from _workspace_with_worker(stack, hub, tmp_path_factory, direct_control=True)


@pytest.fixture(scope="module")
def queue_owner(stack, tmp_path_factory, hub):
    """Its worker has no control endpoint: every control request goes through the queue."""
    yield from _workspace_with_worker(stack, hub, tmp_path_factory, direct_control=False)


def _start(owner, command=ECHO, timeout=60, **body) -> str:
    response = owner.post("/v1/sandbox/sessions", json={"start_command": command, **body})
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["session_id"] == created["job_id"] and created["events_url"].endswith("/events")
    _wait_state(owner, created["session_id"], "running", timeout)
    return created["session_id"]


def _wait_state(owner, session_id, state, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = owner.get(f"/v1/sandbox/sessions/{session_id}").json()
        if session["state"] == state:
            return session
        assert session["state"] != "failed" or state == "failed", session
        time.sleep(0.1)
    raise AssertionError(f"sandbox {session_id} stayed {session['state']}, expected {state}")


def _call(owner, session_id, name, arguments=None):
    return owner.post(f"/v1/sandbox/sessions/{session_id}/tools/call",
                      json={"name": name, "arguments": arguments or {}})


@pytest.mark.parametrize("path", ["direct", "queue"])
def test_sdk_server_through_the_api_matches_a_direct_client(request, path):
    owner = request.getfixturevalue("owner" if path == "direct" else "queue_owner")
    session_id = _start(owner, env={"GREETING": "hello"})
    session = owner.get(f"/v1/sandbox/sessions/{session_id}").json()
    assert session["isolation"] == "bubblewrap" and session["env"] == ["GREETING"]
    tools = owner.get(f"/v1/sandbox/sessions/{session_id}/tools").json()["tools"]
    assert {"echo", "add", "fail", "sleep"} <= {t["name"] for t in tools}
    add = next(t for t in tools if t["name"] == "add")
    assert set(add["input_schema"]["properties"]) == {"a", "b"}

    via_api = [_call(owner, session_id, "add", {"a": 2, "b": 3}).json(),
               _call(owner, session_id, "echo", {"text": "über"}).json()]
    direct = asyncio.run(call_directly(python_command(ECHO_SERVER), [("add", {"a": 2, "b": 3}),
                                                                      ("echo", {"text": "über"})]))
    assert [call["ok"] for call in via_api] == [True, True]
    assert [call["result"] for call in via_api] == direct

    deleted = owner.delete(f"/v1/sandbox/sessions/{session_id}").json()
    assert deleted == {"success": True, "ok": True, "status": "cancelled"}
    assert owner.get(f"/v1/sandbox/sessions/{session_id}/tools").status_code == 409
    assert _call(owner, session_id, "add", {"a": 1, "b": 1}).status_code == 409


def test_a_readiness_wait_answers_once_the_server_is_up_with_what_it_lists(owner):
    created = owner.post("/v1/sandbox/sessions", json={"start_command": ECHO})
    assert created.status_code == 202, created.text
    session_id = created.json()["session_id"]
    waited = owner.get(f"/v1/sandbox/sessions/{session_id}/tools", params={"wait_seconds": 20})
    assert waited.status_code == 200, waited.text  # no polling: the wait ends on the worker's report
    live = owner.get(f"/v1/sandbox/sessions/{session_id}/tools")
    assert waited.json() == live.json()
    assert {"echo", "add"} <= {tool["name"] for tool in waited.json()["tools"]}
    too_long = owner.get(f"/v1/sandbox/sessions/{session_id}/tools", params={"wait_seconds": 26})
    assert too_long.status_code == 422 and too_long.json()["success"] is False
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


def test_published_npm_server_through_the_api_matches_a_direct_client(owner, everything_server):
    session_id = _start(owner, EVERYTHING)
    names = {t["name"] for t in owner.get(f"/v1/sandbox/sessions/{session_id}/tools").json()["tools"]}
    assert {"echo", "get-sum"} <= names
    via_api = _call(owner, session_id, "echo", {"message": "from berth"}).json()
    direct = asyncio.run(call_directly(["node", str(NPM_PREFIX / EVERYTHING_ENTRY)],
                                       [("echo", {"message": "from berth"})]))
    assert via_api["ok"] is True and via_api["result"] == direct[0]
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


@pytest.mark.parametrize("command, tool, arguments, expected", [
    (f"uvx {TIME.identifier}=={TIME.version}", "get_current_time", {"timezone": "Europe/Paris"}, "Europe/Paris"),
    (f"npx -y {EVERYTHING_FROM_NPM.identifier}@{EVERYTHING_FROM_NPM.version}", "echo", {"message": "from npm"},
     "from npm"),
], ids=["uvx-pypi", "npx-npm"])
def test_a_published_package_starts_from_its_start_command_and_a_second_start_installs_nothing(
        owner, command, tool, arguments, expected):
    first = _start(owner, command, timeout=INSTALL_TIMEOUT)
    listed = owner.get(f"/v1/sandbox/sessions/{first}/tools").json()["tools"]
    called = _call(owner, first, tool, arguments).json()
    owner.delete(f"/v1/sandbox/sessions/{first}")
    second = _start(owner, command)
    again = _call(owner, second, tool, arguments).json()
    owner.delete(f"/v1/sandbox/sessions/{second}")

    assert tool in {listed_tool["name"] for listed_tool in listed}
    assert called["ok"] is True and expected in json.dumps(called["result"])
    assert again["ok"] is True
    installed = [event["data"] for event in owner.events(first) if event["step"] == "package"]
    reused = [event["data"] for event in owner.events(second) if event["step"] == "package"]
    assert installed[-1]["stage"] == "done" and installed[-1]["cached"] is False
    assert [stage["stage"] for stage in installed][-2:] == ["installing", "done"]
    assert [(event["stage"], event["cached"]) for event in reused] == [("done", True)]
    steps = [event["step"] for event in owner.events(second)]
    assert steps.index("package") < steps.index("sandbox")  # installed before the server ran

    # The runtime's heartbeats report its cache, which /v1/system/storage shows the workspace.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        caches = [runtime["package_cache"] for runtime in owner.get("/v1/system/storage").json()["runtimes"]]
        entries = [entry for cache in caches if cache for entry in cache["entries"]]
        if any(command.split()[-1].startswith(entry["identifier"]) for entry in entries):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the cache shows no {command}: {caches}")
    assert all(entry["size_bytes"] > 0 and entry["last_used_at"] >= entry["installed_at"] for entry in entries)


def test_a_package_that_does_not_exist_ends_the_session_with_the_installers_message(owner):
    response = owner.post("/v1/sandbox/sessions", json={"start_command": f"npx -y {MISSING_PACKAGE}@1.0.0"})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]

    job = owner.wait_for_status(session_id, "error", timeout=INSTALL_TIMEOUT)

    assert job["error"].startswith("the package did not install: ") and "npm error 404" in job["error"]
    session = owner.get(f"/v1/sandbox/sessions/{session_id}").json()
    assert session["state"] == "failed" and session["error"] == job["error"]


def test_tool_failures_are_results_not_server_errors(owner):
    session_id = _start(owner)
    failed = _call(owner, session_id, "fail")
    assert failed.status_code == 200 and failed.json()["ok"] is False
    unknown = _call(owner, session_id, "no_such_tool").json()
    assert unknown["ok"] is False and "no_such_tool" in unknown["result"]["error"]
    wrong = _call(owner, session_id, "add", {"a": "two", "b": 3}).json()
    assert wrong["ok"] is False and "invalid arguments" in wrong["result"]["error"]
    huge = owner.post(f"/v1/sandbox/sessions/{session_id}/tools/call",
                      json={"name": "echo", "arguments": {"text": "x" * 2_000_000}})
    assert huge.status_code == 413 and huge.json()["success"] is False
    assert _call(owner, session_id, "echo", {"text": "still fine"}).json()["ok"] is True
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


@pytest.mark.parametrize("command, status, message", [
    ("   ", 422, "give start_command or package"),
    ("curl http://example.com", 403, "curl"),
    ("ruby server.rb", 403, "not allowed"),
    ("/usr/bin/python3 x.py", 403, "by name"),
])
def test_bad_start_commands_are_refused_with_a_reason(owner, command, status, message):
    response = owner.post("/v1/sandbox/sessions", json={"start_command": command})
    assert response.status_code == status and message in response.json()["error"]


def test_a_slow_call_times_out_with_504_and_the_sandbox_stays_usable(owner):
    session_id = _start(owner)
    slow = _call(owner, session_id, "sleep", {"seconds": TOOL_CALL_TIMEOUT + 3})
    assert slow.status_code in (200, 504)
    if slow.status_code == 200:  # the worker gave up first and said so
        assert slow.json()["ok"] is False
    else:
        assert "still usable" in slow.json()["error"]
    assert _call(owner, session_id, "echo", {"text": "after"}).json()["ok"] is True
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


def test_cancel_mid_call(owner):
    session_id = _start(owner)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(_call(owner, session_id, "sleep", {"seconds": 3})))
    caller.start()
    time.sleep(0.8)
    assert owner.delete(f"/v1/sandbox/sessions/{session_id}").json()["ok"] is True
    caller.join(timeout=30)
    assert answers and answers[0].status_code in (200, 409, 504)
    assert answers[0].status_code != 500
    job = owner.wait_for_status(session_id, "cancelled", timeout=30)
    assert job["status"] == "cancelled"


def test_ttl_expiry_ends_the_sandbox(owner):
    session_id = _start(owner, ttl_seconds=3)
    job = owner.wait_for_status(session_id, "expired", timeout=30)
    assert job["status"] == "expired"
    assert owner.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "ended"
    assert owner.get(f"/v1/sandbox/sessions/{session_id}/tools").status_code == 409


def test_isolation_holds_through_the_api(owner):
    first = _start(owner)
    second = _start(owner)
    token_file = owner.worker_data_dir / "runtime.json"
    assert token_file.exists()
    stolen = _call(owner, first, "read_file", {"path": str(token_file)}).json()
    assert stolen["ok"] is False
    other_dir = owner.worker_data_dir / "jobs" / second / "sandbox"
    assert other_dir.is_dir()
    (other_dir / "seed.txt").write_text("second's data")  # after its start: not inside its /sandbox
    peek = _call(owner, first, "read_file", {"path": str(other_dir / "seed.txt")}).json()
    assert peek["ok"] is False
    wrote = _call(owner, second, "write_file", {"path": "/sandbox/secret.bin", "mb": 0}).json()
    assert wrote["ok"] is True
    own = _call(owner, second, "read_file", {"path": "/sandbox/secret.bin"}).json()
    theirs = _call(owner, first, "read_file", {"path": "/sandbox/secret.bin"}).json()
    assert own["ok"] is True and theirs["ok"] is False and "No such file" in theirs["result"]["error"]

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        probe = _call(owner, first, "net_probe", {"host": "127.0.0.1", "port": port}).json()
        assert probe["ok"] is False and "cannot connect" in probe["result"]["error"]
    finally:
        listener.close()
    for session_id in (first, second):
        owner.delete(f"/v1/sandbox/sessions/{session_id}")


def test_fork_bomb_and_memory_hog_are_stopped_without_harming_the_worker(owner):
    session_id = _start(owner)
    bomb = _call(owner, session_id, "fork_bomb", {"seconds": 2}).json()
    assert bomb["ok"] is True and "process limit reached" in str(bomb["result"])
    hog = _call(owner, session_id, "hog_memory", {"mb": 4096}).json()
    assert hog["ok"] is False and "memory" in hog["result"]["error"]
    owner.delete(f"/v1/sandbox/sessions/{session_id}")
    owner.wait_for_status(session_id, "cancelled", timeout=30)
    assert owner.worker.process.poll() is None  # the worker lives on
    runtimes = owner.get("/v1/cloud/runtimes").json()["runtimes"]
    assert [r["status"] for r in runtimes] == ["online"]
    follow_up = _start(owner)
    assert _call(owner, follow_up, "add", {"a": 1, "b": 2}).json()["ok"] is True
    owner.delete(f"/v1/sandbox/sessions/{follow_up}")


def test_tool_run_job_calls_one_tool_on_a_running_sandbox(owner):
    session_id = _start(owner)
    job_id = owner.create_job("tool.run", {"session_id": session_id, "name": "add", "arguments": {"a": 20, "b": 22}})
    job = owner.wait_for_status(job_id, "complete", timeout=30)
    assert job["result"]["structuredContent"]["result"] == 42 or "42" in str(job["result"])
    owner.delete(f"/v1/sandbox/sessions/{session_id}")
    not_running = owner.post("/v1/jobs", json={"type": "tool.run",
                                                "payload": {"session_id": session_id, "name": "add"}})
    assert not_running.status_code == 409


def test_control_surface_sandboxes_and_containers(owner):
    created = owner.post("/api/sandboxes", json={"start_command": ECHO, "labels": {"team": "a"}})
    assert created.status_code == 201
    sandbox_id = created.json()["id"]
    _wait_state(owner, sandbox_id, "running")
    listed = owner.get("/api/sandboxes").json()["sandboxes"]
    assert sandbox_id in [s["id"] for s in listed]
    patched = owner.client.patch(f"/api/sandboxes/{sandbox_id}", headers=owner.headers,
                                 json={"labels": {"team": "b"}, "ttl_seconds": 900, "env": {"MODE": "x"}}).json()
    assert patched["labels"] == {"team": "b"} and patched["env"] == ["MODE"]

    containers = owner.get("/api/containers").json()["containers"]
    mine = next(c for c in containers if c["id"] == sandbox_id)
    assert mine["state"] == "running" and mine["pids"] and mine["rss_bytes"] > 0

    assert owner.post(f"/api/sandboxes/{sandbox_id}/stop").json()["state"] == "stopped"
    stopped_tools = owner.get(f"/v1/sandbox/sessions/{sandbox_id}/tools")
    assert stopped_tools.status_code == 409, stopped_tools.text
    assert owner.post(f"/api/sandboxes/{sandbox_id}/start").json()["state"] == "running"
    assert owner.post(f"/api/sandboxes/{sandbox_id}/restart").json()["state"] == "running"
    assert _call(owner, sandbox_id, "echo", {"text": "back"}).json()["ok"] is True
    unknown = owner.post(f"/api/sandboxes/{sandbox_id}/explode")
    assert unknown.status_code == 404 and "start, stop, restart" in unknown.json()["error"]

    removed = owner.post(f"/api/containers/{sandbox_id}/remove").json()
    assert removed["state"] == "cancelled"
    assert owner.get(f"/api/sandboxes/{sandbox_id}").json()["state"] == "ended"


def test_sandboxes_of_another_workspace_are_invisible(owner, api):
    session_id = _start(owner)
    other = new_account(api)
    for response in (other.get(f"/v1/sandbox/sessions/{session_id}"),
                     other.get(f"/v1/sandbox/sessions/{session_id}/tools"),
                     other.post(f"/v1/sandbox/sessions/{session_id}/tools/call", json={"name": "echo"}),
                     other.get(f"/api/sandboxes/{session_id}"),
                     other.post(f"/api/containers/{session_id}/stop"),
                     other.get(f"/api/runtime/config/{session_id}")):
        assert response.status_code == 404, response.text
    owner.delete(f"/v1/sandbox/sessions/{session_id}")


def test_matrixshell_install_exec_and_denylist(owner):
    assert owner.get("/v1/matrixshell/status").json()["installed"] is False
    installed = owner.post("/v1/matrixshell/install")
    assert installed.status_code == 202
    again = owner.post("/v1/matrixshell/install").json()
    assert again["job_id"] == installed.json()["job_id"]
    deadline = time.monotonic() + 60
    while owner.get("/v1/matrixshell/status").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    ran = owner.post("/v1/matrixshell/exec", json={"command": "echo hello && pwd && ls /"})
    assert ran.status_code == 200, ran.text
    ran = ran.json()
    assert ran["exit_code"] == 0 and ran["stdout"].startswith("hello\n/sandbox\n")
    failed = owner.post("/v1/matrixshell/exec", json={"command": "echo oops >&2; exit 3"}).json()
    assert failed["exit_code"] == 3 and failed["stderr"] == "oops\n"
    denied = owner.post("/v1/matrixshell/exec", json={"command": "curl http://example.com"})
    assert denied.status_code == 403 and "curl" in denied.json()["error"]
    owner.delete(f"/v1/jobs/{installed.json()['job_id']}")
