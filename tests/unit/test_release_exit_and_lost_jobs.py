"""Release and exit (issue 11 "Ctrl-C leaves a ghost sandbox"), through the runtime protocol on
moto: a released job is queued again at once, for another runtime; an exiting runtime is offline
at once and its jobs taken back; a running job missing from two heartbeats in a row is lost; a
cancel of a job no worker can stop ends it; a failed sandbox still says how it was confined and
why it failed."""

import pytest

from app import composition
from tests.conftest import bearer, signup
from tests.support.protocol_runtime import ISOLATED, SANDBOX_LABELS, ProtocolRuntime

SANDBOX = ["mcp.test", "mcp.run", "agent.run"]


@pytest.fixture
def user(client) -> str:
    return signup(client)["token"]


def _runtime(client, user, slots=2) -> ProtocolRuntime:
    return ProtocolRuntime.of_workspace(client, user, capabilities=SANDBOX, slots=slots, offers=ISOLATED,
                                        labels=SANDBOX_LABELS)


def _create(client, user, job_type="agent.run", payload=None) -> str:
    body = {"type": job_type, "payload": payload or {"agent": "a"}, "wait": True}
    response = client.post("/v1/jobs", headers=bearer(user), json=body)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _sandbox(client, user) -> str:
    return _create(client, user, "mcp.test", {"start_command": "python3 server.py"})


def _job(client, user, job_id) -> dict:
    return client.get(f"/v1/jobs/{job_id}", headers=bearer(user)).json()


def _claimed(runtime: ProtocolRuntime):
    [message] = runtime.messages()
    return message, runtime.claim(message)


def _steps(client, user, job_id) -> list[tuple[str, str, str]]:
    """The job's events as stored (a stream of an unfinished job would stay open for its window)."""
    workspace_id = client.get("/v1/auth/me", headers=bearer(user)).json()["user"]["workspace_id"]
    events = composition.services().store.jobs.events_after(workspace_id, job_id, 0)
    return [(event.step, event.status.value, event.message) for event in events]


def _held(message, claim) -> dict:
    return {"workspace_id": message.workspace_id, "job_id": message.job_id, "claim_id": claim["claim_id"]}


# --- release --------------------------------------------------------------------------------------


def test_a_released_job_is_queued_at_once_and_dispatched_again_elsewhere(client, user, store):
    stopping = _runtime(client, user, slots=1)
    job_id = _create(client, user)
    message, claim = _claimed(stopping)
    other = _runtime(client, user, slots=1)

    released = stopping.lease(message.workspace_id, job_id, claim["claim_id"], release=True, lease_seconds=5)

    assert released.status_code == 200 and released.json()["ok"] is True
    [again] = other.messages()
    assert again.job_id == job_id and again.dispatch == message.dispatch + 1
    assert stopping.messages() == []
    job = _job(client, user, job_id)
    assert job["status"] == "queued" and job["runtime_id"] == other.runtime_id
    workspace = stopping.registration["workspace_id"]
    assert store.runtimes.get(workspace, stopping.runtime_id).active_jobs == 0  # its slot released
    assert any(step == ("dispatch", "queued", f"runtime {stopping.runtime_id} let the job go (it is stopping); "
                                              "dispatching again") for step in _steps(client, user, job_id))
    # The released claim is over: it can neither renew nor release again.
    assert stopping.lease(message.workspace_id, job_id, claim["claim_id"]).status_code == 409
    assert stopping.lease(message.workspace_id, job_id, claim["claim_id"], release=True).status_code == 409


def test_a_released_job_waits_rather_than_going_back_to_the_runtime_that_let_it_go(client, user):
    stopping = _runtime(client, user, slots=2)
    job_id = _create(client, user)
    message, claim = _claimed(stopping)
    stopping.lease(message.workspace_id, job_id, claim["claim_id"], release=True)
    assert stopping.messages() == []
    assert _job(client, user, job_id)["status"] == "queued" and _job(client, user, job_id)["runtime_id"] is None

    # A runtime that lets a job go is stopping: it takes no new work before its heartbeats say so.
    listed = client.get("/v1/cloud/runtimes", headers=bearer(user)).json()["runtimes"]
    assert [runtime["status"] for runtime in listed] == ["draining"]
    composition.services().sweeper.sweep()
    assert stopping.messages() == [] and _job(client, user, job_id)["runtime_id"] is None
    stopping.heartbeat(draining=False, jobs=[])  # it did not stop after all
    [message] = stopping.messages()
    assert message.job_id == job_id


def test_a_released_job_whose_user_asked_to_cancel_it_ends_cancelled(client, user, store):
    runtime = _runtime(client, user)
    job_id = _create(client, user)
    message, claim = _claimed(runtime)
    store.jobs.request_cancel(store.jobs.get(message.workspace_id, job_id))

    answer = runtime.lease(message.workspace_id, job_id, claim["claim_id"], release=True).json()
    assert answer["cancel_requested"] is True
    assert _job(client, user, job_id)["status"] == "cancelled"


def test_only_the_claimant_releases(client, user):
    runtime = _runtime(client, user)
    job_id = _create(client, user)
    message, _ = _claimed(runtime)
    assert runtime.lease(message.workspace_id, job_id, "clm_not_mine", release=True).status_code == 409
    assert _job(client, user, job_id)["status"] == "running"


# --- exit -----------------------------------------------------------------------------------------


def test_an_exiting_heartbeat_takes_the_runtime_offline_at_once_and_its_jobs_back(client, user, store):
    leaving = _runtime(client, user, slots=2)
    running, unclaimed = _create(client, user), _create(client, user)
    messages = {message.job_id: message for message in leaving.messages()}
    leaving.claim(messages[running])

    answer = leaving.heartbeat(exiting=True, jobs=[])

    assert answer["status"] == "offline"
    listed = client.get("/v1/cloud/runtimes", headers=bearer(user)).json()["runtimes"]
    assert [r["status"] for r in listed if r["runtime_id"] == leaving.runtime_id] == ["offline"]
    for job_id in (running, unclaimed):
        job = _job(client, user, job_id)
        assert job["status"] == "queued" and job["runtime_id"] is None
    assert store.runtimes.get(leaving.registration["workspace_id"], leaving.runtime_id).active_jobs == 0

    successor = _runtime(client, user)
    assert {message.job_id for message in successor.messages()} == {running, unclaimed}


# --- lost jobs --------------------------------------------------------------------------------------


def test_a_running_job_missing_from_two_heartbeats_in_a_row_is_lost(client, user):
    runtime = _runtime(client, user, slots=3)
    sandbox, job_id, kept = _sandbox(client, user), _create(client, user), _create(client, user)
    claims = {message.job_id: (message, runtime.claim(message)) for message in runtime.messages()}
    kept_held = _held(*claims[kept])

    runtime.heartbeat(jobs=[kept_held])  # restarted without the others: missed once
    assert {_job(client, user, j)["status"] for j in (sandbox, job_id, kept)} == {"running"}
    runtime.heartbeat(jobs=[kept_held])  # and twice

    ended = _job(client, user, sandbox)
    assert ended["status"] == "error"
    assert "no longer runs this sandbox" in ended["error"] and "create a new sandbox" in ended["error"]
    requeued = _job(client, user, job_id)
    assert requeued["status"] in ("queued", "running") and requeued["runtime_id"] in (runtime.runtime_id, None)
    [again] = runtime.messages()  # dispatched again (here, to the same runtime: it has room)
    assert again.job_id == job_id and again.dispatch == claims[job_id][0].dispatch + 1
    assert _job(client, user, kept)["status"] == "running"


def test_a_job_reported_again_in_the_next_heartbeat_is_not_lost(client, user):
    runtime = _runtime(client, user)
    sandbox = _sandbox(client, user)
    message, claim = _claimed(runtime)

    runtime.heartbeat(jobs=[])  # built before the claim was recorded by the worker
    runtime.heartbeat(jobs=[_held(message, claim)])
    runtime.heartbeat(jobs=[])
    assert _job(client, user, sandbox)["status"] == "running"  # missed once in a row, twice in all


def test_a_worker_that_does_not_report_its_jobs_loses_none(client, user):
    runtime = _runtime(client, user)
    sandbox = _sandbox(client, user)
    _claimed(runtime)
    for _ in range(3):
        runtime.heartbeat()  # `jobs` left out: a worker from before the field
    assert _job(client, user, sandbox)["status"] == "running"


# --- cancelling a job no worker can stop ----------------------------------------------------------------


def test_deleting_a_sandbox_whose_runtime_is_offline_ends_it_at_once(client, user, store):
    runtime = _runtime(client, user)
    sandbox = _sandbox(client, user)
    _claimed(runtime)
    store.table.update(f"WS#{runtime.registration['workspace_id']}", f"RT#{runtime.runtime_id}",
                       set={"status": "offline"})

    deleted = client.delete(f"/v1/sandbox/sessions/{sandbox}", headers=bearer(user))
    assert deleted.json() == {"success": True, "ok": True, "status": "cancelled"}
    assert ("job", "cancelled", "cancelled: its runtime is offline") in _steps(client, user, sandbox)


# --- views of a failed sandbox ----------------------------------------------------------------------------


def test_a_failed_sandbox_shows_its_isolation_and_limits_and_its_tools_say_why_it_failed(client, user):
    runtime = _runtime(client, user)
    sandbox = _sandbox(client, user)
    message, claim = _claimed(runtime)
    limits = {"memory_mb_per_process": 512, "sandbox_disk_mb": 256, "network": "none"}
    seq = claim["next_seq"]
    runtime.events(message.workspace_id, sandbox, claim["claim_id"], [
        {"seq": seq, "step": "sandbox", "status": "error", "message": "server exited with status 3",
         "data": {"state": "failed", "isolation": "bubblewrap", "limits": limits}},
        {"seq": seq + 1, "step": "job", "status": "error", "message": "the MCP server exited with status 3"}])

    for path in (f"/v1/sandbox/sessions/{sandbox}", f"/api/sandboxes/{sandbox}"):
        view = client.get(path, headers=bearer(user)).json()
        assert (view["state"], view["isolation"], view["limits"]) == ("failed", "bubblewrap", limits)
    listed = client.get("/api/sandboxes", headers=bearer(user)).json()["sandboxes"]
    assert listed[0]["isolation"] == "bubblewrap"

    tools = client.get(f"/v1/sandbox/sessions/{sandbox}/tools", headers=bearer(user))
    assert tools.status_code == 409
    assert "failed" in tools.json()["error"] and "the MCP server exited with status 3" in tools.json()["error"]


def test_tools_of_a_queued_sandbox_say_it_has_not_started(client, user):
    sandbox = _sandbox(client, user)
    tools = client.get(f"/v1/sandbox/sessions/{sandbox}/tools", headers=bearer(user))
    assert tools.status_code == 409 and "queued, not running yet" in tools.json()["error"]
