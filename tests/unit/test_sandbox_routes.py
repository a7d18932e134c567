"""Sandbox routes' answers that need no worker: refusals, policy errors and not-running states."""

import pytest

from app import composition
from tests.conftest import bearer, signup


@pytest.fixture
def token(client):
    return signup(client)["token"]


def test_matrixshell_is_403_when_disabled(client, token, monkeypatch):
    monkeypatch.setenv("BERTH_MATRIXSHELL_ENABLED", "false")
    composition.reset()
    for method, path in (("get", "/v1/matrixshell/status"), ("post", "/v1/matrixshell/install")):
        response = getattr(client, method)(path, headers=bearer(token))
        assert response.status_code == 403 and "disabled" in response.json()["error"]
    denied = client.post("/v1/matrixshell/exec", headers=bearer(token), json={"command": "ls"})
    assert denied.status_code == 403


def test_matrixshell_denies_commands_before_looking_for_the_shell(client, token):
    denied = client.post("/v1/matrixshell/exec", headers=bearer(token), json={"command": "wget http://x"})
    assert denied.status_code == 403 and "wget" in denied.json()["error"]
    not_installed = client.post("/v1/matrixshell/exec", headers=bearer(token), json={"command": "ls"})
    assert not_installed.status_code == 409 and "install" in not_installed.json()["error"]


def test_a_sandbox_without_a_runtime_is_queued_and_its_tools_are_409(client, token):
    created = client.post("/v1/sandbox/sessions", headers=bearer(token), json={"start_command": "node server.js"})
    assert created.status_code == 202 and created.json()["status"] == "queued"
    session_id = created.json()["session_id"]
    assert client.get(f"/v1/sandbox/sessions/{session_id}", headers=bearer(token)).json()["state"] == "starting"
    tools = client.get(f"/v1/sandbox/sessions/{session_id}/tools", headers=bearer(token))
    assert tools.status_code == 409 and "queued" in tools.json()["error"]
    call = client.post(f"/v1/sandbox/sessions/{session_id}/tools/call", headers=bearer(token), json={"name": "x"})
    assert call.status_code == 409


def test_ids_of_other_job_types_are_not_sandboxes(client, token):
    job = client.post("/v1/jobs", headers=bearer(token), json={"type": "model.inspect", "payload": {"model": "a/b"}})
    job_id = job.json()["job_id"]
    assert client.get(f"/v1/sandbox/sessions/{job_id}", headers=bearer(token)).status_code == 404
    assert client.get(f"/api/sandboxes/{job_id}", headers=bearer(token)).status_code == 404


@pytest.mark.parametrize("body, status, fragment", [
    ({}, 422, "start_command"),
    ({"start_command": "node s.js", "transport": "carrier-pigeon"}, 422, "transport"),
    ({"start_command": "sh -c 'shutdown now'"}, 403, "shutdown"),
    ({"start_command": "node s.js", "ttl_seconds": 10**6}, 422, "max_ttl_seconds"),
])
def test_bad_sandbox_requests(client, token, body, status, fragment):
    response = client.post("/api/sandboxes", headers=bearer(token), json=body)
    assert response.status_code == status and fragment in response.json()["error"]


def test_patch_and_actions_on_an_ended_sandbox(client, token):
    created = client.post("/api/sandboxes", headers=bearer(token), json={"start_command": "node s.js"}).json()
    sandbox_id = created["id"]
    assert client.delete(f"/api/sandboxes/{sandbox_id}", headers=bearer(token)).json()["state"] == "cancelled"
    patched = client.patch(f"/api/sandboxes/{sandbox_id}", headers=bearer(token), json={"labels": {"a": "b"}})
    assert patched.status_code == 409 and "ended" in patched.json()["error"]
    action = client.post(f"/api/sandboxes/{sandbox_id}/restart", headers=bearer(token))
    assert action.status_code == 409
    assert client.get("/api/containers", headers=bearer(token)).json()["containers"] == []


def test_a_running_report_answers_a_readiness_wait_only_with_full_tool_definitions():
    from app.contract.messages import EventStatus
    from app.domain.jobs import JobEvent
    from app.services.sandboxes import tools_reported_at_start

    echo = {"name": "echo", "description": "says it back", "input_schema": {"type": "object"}}
    running = JobEvent(seq=3, step="sandbox", status=EventStatus.running,
                       data={"state": "running", "tools": ["echo"], "tool_definitions": [echo]})
    assert [tool.model_dump() for tool in tools_reported_at_start(running)] == [echo]
    too_large_to_carry = JobEvent(seq=3, step="sandbox", status=EventStatus.running,
                                  data={"state": "running", "tools": ["echo"]})
    failed = JobEvent(seq=3, step="sandbox", status=EventStatus.error, data={"state": "failed"})
    unreadable = JobEvent(seq=3, step="sandbox", status=EventStatus.running,
                          data={"state": "running", "tool_definitions": [{"description": "no name"}, "not a tool"]})
    assert tools_reported_at_start(too_large_to_carry) is None
    assert tools_reported_at_start(unreadable) is None
    assert tools_reported_at_start(failed) is None
    assert tools_reported_at_start(None) is None


def test_a_sandbox_from_a_package_is_stored_as_the_package_and_shown_as_its_command(client, token):
    package = {"registryType": "pypi", "identifier": "mcp-server-time", "version": "2026.10.19",
               "transport": {"type": "stdio"}}
    created = client.post("/v1/sandbox/sessions", headers=bearer(token), json={"package": package})
    assert created.status_code == 202, created.text
    view = client.get(f"/v1/sandbox/sessions/{created.json()['session_id']}", headers=bearer(token)).json()
    assert view["start_command"] == "uvx mcp-server-time==2026.10.19"


@pytest.mark.parametrize(("body", "says"), [
    ({}, "give start_command or package"),
    ({"package": {"registryType": "oci", "identifier": "ghcr.io/x/y", "version": "1.0.0",
                  "transport": {"type": "stdio"}}}, "start_command"),
    ({"start_command": "npx --registry=https://evil.example foo"}, "registry"),
])
def test_a_sandbox_that_names_no_runnable_server_is_refused_before_anything_runs(client, token, body, says):
    refused = client.post("/v1/sandbox/sessions", headers=bearer(token), json=body)
    assert refused.status_code in (403, 422), refused.text
    assert says in refused.json()["error"]
