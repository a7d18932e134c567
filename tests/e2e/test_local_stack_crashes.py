"""The local stack when things go wrong, as a user meets it: `berth up` SIGKILLed and started again,
a second `berth up` on the same data directory, Ctrl-C with a sandbox running. Real processes,
really killed; what is left is read from /proc."""

import json
import time

import httpx
import pytest

from app.local.stack import free_port
from tests.e2e.conftest import Account, new_account
from tests.support.berth_up import BerthUp, still_running, wait_until_gone
from tests.support.hub import DEMO_LLAMA, make_demo_hub
from tests.support.sandbox_fixtures import ECHO_SERVER

pytestmark = pytest.mark.e2e

ECHO = f"python3 {ECHO_SERVER}"


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as running:
        yield running


def _environment(hub) -> dict[str, str]:
    """The demo hub for model jobs, and the echo server visible to the local worker's sandboxes."""
    return {**hub.environment(), "BERTH_WORKER_SANDBOX_TOOL_DIRS": json.dumps([str(ECHO_SERVER.parent)])}


def _wait(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not hold within {timeout:g} s")


def _local_runtime_online(account: Account) -> dict:
    def online():
        runtimes = account.get("/v1/runtimes").json()["runtimes"]
        return next((r for r in runtimes if r["shared"] and r["status"] == "online"), None)

    return _wait(online, what="the local worker online")


def _running_sandbox(account: Account) -> str:
    response = account.post("/v1/sandbox/sessions", json={"start_command": ECHO, "ttl_seconds": 600})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    _wait(lambda: account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "running",
          what="the sandbox running")
    return session_id


def _signup(api: httpx.Client, email: str) -> None:
    response = api.post("/v1/auth/signup", json={"name": "Grace", "email": email, "password": "correct-horse"})
    assert response.status_code == 201, response.text


def _login(api: httpx.Client, email: str) -> int:
    return api.post("/v1/auth/login", json={"email": email, "password": "correct-horse"}).status_code


def test_after_a_sigkill_the_account_made_just_before_logs_in_jobs_run_and_nothing_is_left_running(tmp_path, hub):
    data_dir, port, moto_port = tmp_path / "berth", free_port(), free_port()
    first = BerthUp(data_dir, port, moto_port, environment=_environment(hub)).wait_until_up()
    with httpx.Client(base_url=first.api, timeout=30) as api:
        owner = new_account(api)
        runtime = _local_runtime_online(owner)
        _running_sandbox(owner)
        started = first.descendants()
        commands = " ".join(process.command for process in started)
        assert "app.local.aws_server" in commands and "-m workers" in commands and "bwrap" in commands, commands
        _signup(api, "grace@example.com")  # acknowledged, and at once:
    first.kill()
    killed = time.monotonic()

    # Started again at once, as a user would: it waits for the killed stack's processes to go.
    second = BerthUp(data_dir, port, moto_port, environment=_environment(hub)).wait_until_up()
    seconds_to_up = time.monotonic() - killed
    try:
        seconds_to_gone = wait_until_gone(started, timeout=5)  # sandboxes go with their worker, if not gone yet
        with httpx.Client(base_url=second.api, timeout=30) as api:
            assert _login(api, "grace@example.com") == 200
            owner = Account(api, owner.token, owner.workspace_id, owner.headers)
            job_id = owner.create_job(payload={"model": DEMO_LLAMA})
            job = owner.wait_for_status(job_id, ("complete", "failed"), timeout=120)
            assert job["status"] == "complete", job
            registered = json.loads((data_dir / "worker" / "runtime.json").read_text())["runtime_id"]
            assert job["runtime_id"] == registered == runtime["runtime_id"]
    finally:
        assert second.ctrl_c() < 60
    waited = "waiting for the processes of the berth that stopped" in second.output
    print(f"\nup again {seconds_to_up:.1f} s after the SIGKILL; it {'waited for' if waited else 'found gone'} the "
          f"killed stack's processes, and the last of them went {seconds_to_gone:.1f} s after it was up")


def test_a_second_berth_up_on_the_same_data_directory_refuses_naming_the_first_and_changes_nothing(tmp_path):
    data_dir, port = tmp_path / "berth", free_port()
    first = BerthUp(data_dir, port, free_port(), "--no-worker").wait_until_up()
    try:
        with httpx.Client(base_url=first.api, timeout=30) as api:
            _signup(api, "ada@example.com")
            snapshot = data_dir / "state" / "dynamodb.jsonl"
            _wait(lambda: snapshot.exists() and "ada@example.com" in snapshot.read_text(), 10, "the signup on disk")
            before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in data_dir.rglob("*")
                      if path.is_file()}
            second_port, second_moto_port = free_port(), free_port()
            second = BerthUp(data_dir, second_port, second_moto_port)
            assert second.wait(timeout=60) == 1
            output = second.output
            assert f"berth is already running on {data_dir}: pid {first.process.pid}, API {first.api}" in output
            assert "berth is up" not in output
            after = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in data_dir.rglob("*")
                     if path.is_file()}
            assert after == before  # no restore, no worker, no state written
            assert not (data_dir / "worker").exists()
            for taken in (second_port, second_moto_port):  # nothing of it was left listening either
                with pytest.raises(httpx.ConnectError):
                    httpx.get(f"http://127.0.0.1:{taken}/", timeout=2)
            assert _login(api, "ada@example.com") == 200  # the first serves on
    finally:
        first.ctrl_c()


def test_ctrl_c_with_a_sandbox_running_returns_in_seconds_with_the_state_saved(tmp_path, hub):
    data_dir, port, moto_port = tmp_path / "berth", free_port(), free_port()
    first = BerthUp(data_dir, port, moto_port, environment=_environment(hub)).wait_until_up()
    with httpx.Client(base_url=first.api, timeout=30) as api:
        owner = new_account(api)
        _local_runtime_online(owner)
        session_id = _running_sandbox(owner)
        started = first.descendants()
        _signup(api, "hopper@example.com")
    seconds = first.ctrl_c()
    output = first.output
    assert first.process.returncode == 0, output
    assert "stopped; state saved." in output
    assert not still_running(started), "berth up returned before its processes had exited"
    assert seconds < 10, f"Ctrl-C took {seconds:.1f} s"  # a hang guard; the figure is printed below
    worker_log = output[output.index("stop requested"):]
    assert "worker stopped" in worker_log

    second = BerthUp(data_dir, port, moto_port, environment=_environment(hub)).wait_until_up()
    try:
        with httpx.Client(base_url=second.api, timeout=30) as api:
            assert _login(api, "hopper@example.com") == 200
            owner = Account(api, owner.token, owner.workspace_id, owner.headers)
            sandbox = owner.get(f"/v1/sandbox/sessions/{session_id}").json()
            job = owner.job(session_id)
    finally:
        second.ctrl_c()
    print(f"Ctrl-C with a sandbox running: {seconds:.2f} s; after the restart the sandbox is "
          f"{sandbox['state']} (job {job['status']}, runtime {job.get('runtime_id')})")

