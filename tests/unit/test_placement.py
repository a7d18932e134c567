"""Placement only where a job can run (issue 9 "Sandboxes", issue 11 "Released jobs go where they
cannot run"): dispatch reads what each runtime offers (isolation, network, tool directories, kept
from its registration and every heartbeat) and what a sandbox needs; views say how each runtime
isolates sandboxes; the policy's limits are settings, shown and sent with each job."""

import pytest

from app import composition
from tests.conftest import bearer, signup
from tests.support.protocol_runtime import ISOLATED, SANDBOX_LABELS, ProtocolRuntime, shared_join_token

SANDBOX = ["mcp.test", "mcp.run"]
TOOLS = "/opt/mcp/tools"


@pytest.fixture
def user(client) -> str:
    return signup(client)["token"]


def _sandbox(client, user, command="python3 server.py", **body) -> str:
    response = client.post("/v1/sandbox/sessions", headers=bearer(user), json={"start_command": command, **body})
    assert response.status_code == 202, response.text
    return response.json()["session_id"]


def _runtime_of(client, user, job_id) -> str | None:
    return client.get(f"/v1/jobs/{job_id}", headers=bearer(user)).json()["runtime_id"]


def test_a_sandbox_needing_a_tool_directory_goes_only_where_a_runtime_offers_it(client, user):
    without = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, offers=ISOLATED, labels=SANDBOX_LABELS)
    needs_tools = _sandbox(client, user, f"node {TOOLS}/server-everything/index.js")
    named = _sandbox(client, user, "node index.js", tool_dirs=[f"{TOOLS}/server-everything"])
    anywhere = _sandbox(client, user, "python3 /usr/lib/python3/dist-packages/server.py")  # every sandbox sees /usr

    assert [message.job_id for message in without.messages()] == [anywhere]
    assert _runtime_of(client, user, needs_tools) is None and _runtime_of(client, user, named) is None

    with_tools = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, slots=4, labels=SANDBOX_LABELS,
                                              offers={"isolation": "bubblewrap", "tool_dirs": [TOOLS]})
    assert {message.job_id for message in with_tools.messages()} == {needs_tools, named}


def test_offers_follow_the_heartbeats_and_a_runtime_that_offers_nothing_gets_no_sandbox(client, user, store):
    runtime = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, labels=SANDBOX_LABELS)  # no offers
    waiting = _sandbox(client, user)
    assert runtime.messages() == []
    record = store.runtimes.get(runtime.registration["workspace_id"], runtime.runtime_id)
    assert record.offers is None and record.isolation == "none"

    runtime.heartbeat(offers={"isolation": "bubblewrap", "tool_dirs": [TOOLS]})
    composition.services().sweeper.sweep()  # dispatches what waits
    assert [message.job_id for message in runtime.messages()] == [waiting]
    record = store.runtimes.get(runtime.registration["workspace_id"], runtime.runtime_id)
    assert record.tool_dirs == [TOOLS]

    runtime.heartbeat()  # a worker that stops saying what it offers offers nothing
    assert store.runtimes.get(runtime.registration["workspace_id"], runtime.runtime_id).offers is None


def test_another_workspaces_sandbox_never_goes_to_a_shared_runtime_without_isolation(client, user):
    unisolated = ProtocolRuntime.register(client, shared_join_token(), capabilities=SANDBOX,
                                          offers={"isolation": "rlimits", "tool_dirs": []},
                                          labels={"sandbox": "rlimits", "sandbox_network": "none"})
    waiting = _sandbox(client, user)
    assert unisolated.messages() == []

    isolated = ProtocolRuntime.register(client, shared_join_token(), capabilities=SANDBOX, offers=ISOLATED,
                                        labels=SANDBOX_LABELS)
    assert [message.job_id for message in isolated.messages()] == [waiting]


def test_a_workspaces_own_unisolated_runtime_runs_its_sandboxes(client, user):
    own = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, offers={"isolation": "rlimits"},
                                       labels={"sandbox": "rlimits", "sandbox_network": "none"})
    sandbox = _sandbox(client, user)
    assert [message.job_id for message in own.messages()] == [sandbox]


def test_a_networked_sandbox_goes_only_where_it_gets_a_network_namespace_of_its_own(client, user, monkeypatch):
    monkeypatch.setenv("BERTH_SANDBOX_NETWORK", "true")
    composition.reset()
    shared_host_network = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, offers=ISOLATED,
                                                       labels={"sandbox": "bubblewrap", "sandbox_network": "none"})
    waiting = _sandbox(client, user)
    assert shared_host_network.messages() == []

    pasta = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, offers=ISOLATED,
                                         labels={"sandbox": "bubblewrap", "sandbox_network": "pasta"})
    assert [message.job_id for message in pasta.messages()] == [waiting]
    assert pasta.messages() == [] and shared_host_network.messages() == []


def test_listings_capabilities_and_status_say_how_each_runtime_isolates_sandboxes(client, user):
    own = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX,
                                       offers={"isolation": "rlimits", "tool_dirs": [TOOLS]},
                                       labels={"sandbox": "rlimits", "sandbox_network": "none"})
    shared = ProtocolRuntime.register(client, shared_join_token(), capabilities=SANDBOX, offers=ISOLATED,
                                      labels={"sandbox": "bubblewrap", "sandbox_network": "pasta"})

    listed = {r["runtime_id"]: r["sandboxes"] for r in
              client.get("/v1/cloud/runtimes", headers=bearer(user)).json()["runtimes"]}
    assert listed[own.runtime_id]["isolation"] == "rlimits" and listed[own.runtime_id]["tool_dirs"] == [TOOLS]
    assert "without isolation" in listed[own.runtime_id]["warning"]
    assert listed[shared.runtime_id] == {"isolation": "bubblewrap", "network": "pasta", "tool_dirs": [],
                                         "warning": None}
    assert {r["runtime_id"]: r["sandboxes"] for r in
            client.get("/v1/runtimes", headers=bearer(user)).json()["runtimes"]} == listed

    capabilities = client.get("/v1/capabilities", headers=bearer(user)).json()["sandboxes"]
    assert {(r["runtime_id"], r["isolation"], r["network"]) for r in capabilities["runtimes"]} == {
        (own.runtime_id, "rlimits", "none"), (shared.runtime_id, "bubblewrap", "pasta")}
    assert len(capabilities["warnings"]) == 1 and own.runtime_id in capabilities["warnings"][0]

    status = client.get("/status").json()
    assert status["sandbox"]["driver"] == "mixed" and status["sandbox"]["drivers"] == ["bubblewrap", "rlimits"]
    assert any(own.runtime_id in warning and "without isolation" in warning for warning in status["warnings"])


def test_the_policys_sandbox_limits_are_settings_shown_and_sent_with_each_job(client, user, monkeypatch):
    limits = {"BERTH_SANDBOX_DISK_MB": "100", "BERTH_SANDBOX_MAX_FILE_MB": "8",
              "BERTH_SANDBOX_TOTAL_MEMORY_MB": "768", "BERTH_SANDBOX_CPU_CORES": "0.5"}
    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    composition.reset()

    shown = client.get("/v1/policies", headers=bearer(user)).json()["sandbox"]
    assert (shown["disk_mb"], shown["max_file_mb"], shown["sandbox_memory_mb"], shown["cpu_cores"]) == (
        100, 8, 768, 0.5)
    runtime = ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, offers=ISOLATED, labels=SANDBOX_LABELS)
    _sandbox(client, user)
    [message] = runtime.messages()
    policy = message.policy
    assert (policy.disk_mb, policy.max_file_mb, policy.sandbox_memory_mb, policy.cpu_cores) == (100, 8, 768, 0.5)


def test_the_policys_defaults_are_the_contracts(aws_resources):
    from app.contract.policy import SandboxPolicy
    from app.services.policy import sandbox_policy
    from app.settings import Settings

    assert sandbox_policy(Settings(), ttl_seconds=600) == SandboxPolicy(ttl_seconds=600)  # no BERTH_* set
