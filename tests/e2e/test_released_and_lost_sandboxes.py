"""No ghosts (issue 11 "Ctrl-C leaves a ghost sandbox", "Released jobs go where they cannot run"),
with real worker processes and real sandboxes on the local stack.

The stack here counts a runtime offline only after a minute of silence, while the workers
heartbeat every second: whatever happens to a job below is the work of the release, the exiting
heartbeat, the held-jobs report or the cancel, never of the sweeper noticing a silent runtime.
"""

import signal
import time

import pytest

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, parse_sse
from tests.support.sandbox_fixtures import ECHO_SERVER

pytestmark = pytest.mark.e2e

ECHO = f"python3 {ECHO_SERVER}"
TOOL_DIR = ("--sandbox-tool-dir", str(ECHO_SERVER.parent))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    options = StackOptions(
        data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(), worker=False,
        sweep_interval=0.5, snapshot_interval=3600,
        environment={**FAST_SETTINGS, "BERTH_HEARTBEAT_INTERVAL_SECONDS": "30"},
    )
    running = LocalStack(options).start()
    yield running
    running.stop()


def _wait(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not hold in time")


def _running_sandbox(account) -> str:
    response = account.post("/v1/sandbox/sessions", json={"start_command": ECHO})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    _wait(lambda: account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "running",
          what="the sandbox's start")
    return session_id


def _runtime(account, runtime_id: str) -> dict:
    listed = account.get("/v1/cloud/runtimes").json()["runtimes"]
    return next(runtime for runtime in listed if runtime["runtime_id"] == runtime_id)


def _event_messages(account, job_id: str) -> list[str]:
    """The job's events so far (one window of its stream)."""
    with account.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=account.headers) as response:
        return [event["data"]["message"] for event in parse_sse(response.iter_lines()) if event["event"] != "end"]


def test_sigterm_puts_a_running_sandbox_back_in_the_queue_at_once_and_the_runtime_offline(account, workers):
    worker = workers(account.join_token(), *TOOL_DIR, "--stop-grace-seconds", "600")
    session_id = _running_sandbox(account)

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    queued = account.wait_for_status(session_id, "queued", timeout=30)
    requeued_after = time.monotonic() - started
    assert worker.process.wait(timeout=60) == 0

    assert queued["runtime_id"] is None  # nowhere else to go: the runtime that let it go is not a candidate
    assert any("let the job go (it is stopping)" in message for message in _event_messages(account, session_id))
    assert _runtime(account, worker.runtime_id)["status"] == "offline"  # its last heartbeat said it is exiting
    print(f"SIGTERM with a sandbox running: queued again after {requeued_after:.2f} s")


def test_a_released_sandbox_goes_only_where_its_tool_directory_is(account, workers):
    stopping = workers(account.join_token(), *TOOL_DIR, "--stop-grace-seconds", "600")
    without_tools = workers(account.join_token())
    session_id = _running_sandbox(account)
    assert account.job(session_id)["runtime_id"] == stopping.runtime_id  # the other lacks its directory

    stopping.signal(signal.SIGTERM)
    account.wait_for_status(session_id, "queued", timeout=30)
    stopping.process.wait(timeout=60)
    with_tools = workers(account.join_token(), *TOOL_DIR)

    job = account.wait_for_status(session_id, "running", timeout=60)
    assert job["runtime_id"] == with_tools.runtime_id != without_tools.runtime_id
    _wait(lambda: account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "running",
          what="the sandbox's start on the runtime with its tools")


def test_a_sandbox_whose_worker_was_killed_and_restarted_is_ended_within_two_heartbeats(account, workers):
    # A long claim lease and message visibility: nothing but the heartbeats can end the ghost here.
    killed = workers(account.join_token(), *TOOL_DIR, "--visibility-seconds", "120")
    session_id = _running_sandbox(account)

    killed.signal(signal.SIGKILL)
    killed.process.wait()
    started = time.monotonic()
    workers(None, *TOOL_DIR, data_dir=workers.clone(killed))  # the same registration, a new process

    job = account.wait_for_status(session_id, "error", timeout=60)
    ended_after = time.monotonic() - started
    assert "no longer runs this sandbox" in job["error"] and "create a new sandbox" in job["error"]
    tools = account.get(f"/v1/sandbox/sessions/{session_id}/tools")
    assert tools.status_code == 409 and "no longer runs this sandbox" in tools.json()["error"]
    print(f"a ghost sandbox ended {ended_after:.2f} s after its runtime's new process started")


def test_deleting_a_ghost_sandbox_ends_it_at_once(account, workers):
    killed = workers(account.join_token(), *TOOL_DIR, "--visibility-seconds", "120")
    session_id = _running_sandbox(account)
    # Two heartbeats report the sandbox before the kill: one built before its claim and received
    # after it leaves it out, and the new process's first would then count as the second miss.
    for _ in range(2):
        seen = _runtime(account, killed.runtime_id)["last_heartbeat_at"]
        _wait(lambda: _runtime(account, killed.runtime_id)["last_heartbeat_at"] != seen, what="a heartbeat")
    killed.signal(signal.SIGKILL)
    killed.process.wait()
    before = _runtime(account, killed.runtime_id)["last_heartbeat_at"]
    # Its new process heartbeats twice a minute here, so the ghost outlives this test unless deleted.
    workers(None, *TOOL_DIR, "--heartbeat-interval-seconds", "30", data_dir=workers.clone(killed))
    _wait(lambda: _runtime(account, killed.runtime_id)["last_heartbeat_at"] != before,
          what="the new process's heartbeat")
    assert account.job(session_id)["status"] == "running"  # a ghost: its runtime has no such sandbox

    deleted = account.delete(f"/v1/sandbox/sessions/{session_id}")

    assert deleted.status_code == 200 and deleted.json() == {"success": True, "ok": True, "status": "cancelled"}
    assert account.job(session_id)["status"] == "cancelled"
    assert "cancelled: its runtime no longer ran it" in _event_messages(account, session_id)
