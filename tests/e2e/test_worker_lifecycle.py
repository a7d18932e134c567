"""A worker's life across processes, on the real local stack with real sandboxes: killed, it leaves
no sandbox behind (with bubblewrap, and without it where the owner accepts unisolated sandboxes);
a second process for its data directory is refused; stopped, it releases a running sandbox at once
instead of waiting out its grace."""

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import parse_sse
from tests.support.sandbox_fixtures import (  # noqa: F401 (a fixture)
    ECHO_SERVER,
    EVERYTHING_ENTRY,
    NPM_PREFIX,
    without_bubblewrap,
)

pytestmark = pytest.mark.e2e

ECHO = f"python3 {ECHO_SERVER}"


def _identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time): a pid alone could be reused by the time we look again."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return None if fields[0] in ("Z", "X") else (pid, fields[19])


def _descendants(root: int) -> set[tuple[int, str]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = set(), list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if (identity := _identity(pid)) is not None:
            found.add(identity)
        stack.extend(children.get(pid, []))
    return found


def _alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    return {identity for identity in processes if _identity(identity[0]) == identity}


def _wait(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError("the condition did not hold in time")


def _running_sandbox(account) -> str:
    response = account.post("/v1/sandbox/sessions", json={"start_command": ECHO})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    account.wait_for_status(session_id, "running")
    _wait(lambda: account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "running", 60)
    return session_id


def _events_so_far(account, job_id: str) -> list[dict]:
    """One window of the job's event stream (it does not end while the job is unfinished)."""
    with account.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=account.headers) as response:
        assert response.status_code == 200
        return [event["data"] for event in parse_sse(response.iter_lines()) if event["event"] != "end"]


def _sandbox_worker(account, workers, *args: str):
    return workers(account.join_token(), "--sandbox-tool-dir", str(ECHO_SERVER.parent), *args)


def test_a_worker_killed_with_sigkill_leaves_no_sandbox_behind(account, workers):
    worker = _sandbox_worker(account, workers)
    _running_sandbox(account)
    sandbox = _descendants(worker.process.pid)
    assert sandbox, "the sandbox runs as the worker's children"

    worker.process.send_signal(signal.SIGKILL)  # the worker alone, as the OOM killer would
    worker.process.wait()

    assert _wait(lambda: not _alive(sandbox) or None), f"left behind: {_alive(sandbox)}"


@pytest.mark.usefixtures("without_bubblewrap", "everything_server")
def test_without_bubblewrap_a_worker_killed_with_sigkill_leaves_no_server_behind(account, workers):
    worker = workers(account.join_token(), "--allow-unisolated-sandboxes", "--sandbox-tool-dir", str(NPM_PREFIX))
    # A server that outlives its client: node exits when its stdin closes, the shell it runs under
    # would then sleep on. Only the sandbox's own means can end it.
    command = f"sh -c 'node {NPM_PREFIX / EVERYTHING_ENTRY}; exec sleep 600'"
    response = account.post("/v1/sandbox/sessions", json={"start_command": command})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    _wait(lambda: account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "running", 60)
    assert account.get(f"/v1/sandbox/sessions/{session_id}").json()["isolation"] == "rlimits"
    sandbox = _descendants(worker.process.pid)
    assert sandbox, "the server runs as the worker's children"

    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()

    assert _wait(lambda: not _alive(sandbox) or None), f"left behind: {_alive(sandbox)}"


def test_a_second_worker_process_for_one_data_directory_is_refused_naming_the_first(account, workers, stack):
    first = _sandbox_worker(account, workers)
    second = subprocess.run(stack.worker_command(first.data_dir, None), env=stack.worker_environment(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"another worker (process {first.process.pid}) is running on {first.data_dir}" in second.stderr
    assert first.process.poll() is None  # the first keeps serving
    job_id = account.create_job("mcp.test", {"start_command": ECHO}, ttl_seconds=60)
    account.wait_for_status(job_id, "running")


def test_sigterm_with_a_sandbox_running_releases_it_at_once_and_the_job_goes_back_to_queued(account, workers):
    # A grace period far longer than the test may take: the sandbox must not wait it out.
    worker = _sandbox_worker(account, workers, "--stop-grace-seconds", "600")
    session_id = _running_sandbox(account)
    sandbox = _descendants(worker.process.pid)

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.process.wait(timeout=120)
    stopped_after = time.monotonic() - started

    assert code == 0
    assert not _alive(sandbox)
    log = worker.log_path.read_text()
    assert "releasing job for another runtime" in log and "waiting for running jobs" not in log
    job = account.wait_for_status(session_id, "queued", timeout=30)
    assert job["status"] == "queued"
    steps = [(event["step"], event["status"]) for event in _events_so_far(account, session_id)]
    assert ("sandbox", "ok") in steps and ("job", "complete") not in steps  # stopped and released, not ended
    print(f"SIGTERM with a sandbox running: the worker exited after {stopped_after:.2f} s")
