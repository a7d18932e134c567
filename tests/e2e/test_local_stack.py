"""`berth up` as a user runs it: a real process, real ports, Ctrl-C, restart, --fresh."""

import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from app.local.stack import LocalStack, StackOptions, free_port
from tests.support.berth_up import BerthUp

pytestmark = pytest.mark.e2e


def test_berth_up_serves_stops_cleanly_and_keeps_state(tmp_path):
    port, moto_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    first = BerthUp(tmp_path, port, moto_port, "--no-worker").wait_until_up()
    signup = httpx.post(f"{api}/v1/auth/signup",
                        json={"name": "Ada", "email": "ada@example.com", "password": "correct-horse"})
    assert signup.status_code == 201
    key = httpx.post(f"{api}/api/auth/keys/generate", headers={"Authorization": f"Bearer {signup.json()['token']}"},
                     json={"name": "kept"}).json()["key"]
    first.ctrl_c()
    assert first.process.returncode == 0, first.output
    assert f"{api}/api-docs" in first.output and "stopped; state saved." in first.output

    second = BerthUp(tmp_path, port, moto_port, "--no-worker").wait_until_up()
    login = httpx.post(f"{api}/v1/auth/login", json={"email": "ada@example.com", "password": "correct-horse"})
    assert login.status_code == 200
    assert httpx.get(f"{api}/v1/auth/me", headers={"X-API-Key": key}).status_code == 200
    assert httpx.get(f"{api}/v1/ready").json()["ready"] is True
    second.ctrl_c()

    fresh = BerthUp(tmp_path, port, moto_port, "--no-worker", "--fresh").wait_until_up()
    assert httpx.post(f"{api}/v1/auth/login",
                      json={"email": "ada@example.com", "password": "correct-horse"}).status_code == 401
    fresh.ctrl_c()
    assert fresh.process.returncode == 0, fresh.output


def test_snapshot_restores_thousands_of_items_and_the_kms_key(tmp_path):
    options = StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(), worker=False)
    stack = LocalStack(options).start()
    items = [{"pk": f"WS#load{n % 20}", "sk": f"ITEM#{n:05d}", "n": n, "payload": {"text": "x" * 100}}
             for n in range(3000)]
    stack.services.store.table.batch_put(items)
    kms = stack.services.aws.client("kms")
    ciphertext = kms.encrypt(KeyId=stack.services.settings.kms_key_alias, Plaintext=b"provider-token")["CiphertextBlob"]
    stack.stop()

    restarted = LocalStack(StackOptions(data_dir=tmp_path, port=options.port, moto_port=free_port(),
                                        worker=False)).start()
    try:
        assert restarted.restored_items >= 3000
        restored = restarted.services.store.table.query("WS#load7", prefix="ITEM#").items
        assert [i["n"] for i in restored] == list(range(7, 3000, 20))
        assert restored[0]["payload"] == {"text": "x" * 100}
        plain = restarted.services.aws.client("kms").decrypt(CiphertextBlob=ciphertext)["Plaintext"]
        assert plain == b"provider-token"
    finally:
        restarted.stop()


def test_a_new_user_runs_a_job_on_the_stacks_own_shared_worker(tmp_path):
    from tests.e2e.conftest import new_account
    from tests.support.hub import DEMO_LLAMA, make_demo_hub

    with make_demo_hub() as hub:
        options = StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(), worker=True,
                               environment=hub.environment())
        stack = LocalStack(options).start()
        try:
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                account = new_account(api)
                job_id = account.create_job(payload={"model": DEMO_LLAMA})
                events = account.events(job_id)
                assert [e["status"] for e in events if e["step"] == "job"] == ["queued", "start", "complete"]
                runtime = account.get("/v1/runtimes").json()["runtimes"][0]
                assert runtime["shared"] is True and runtime["status"] == "online"
                assert account.job(job_id)["runtime_id"] == runtime["runtime_id"]
                assert api.get("/status").json()["sandbox"]["driver"] in ("bubblewrap", "rlimits")
        finally:
            stack.stop()
        assert stack.worker.returncode == 0  # SIGTERM: the worker drained and exited cleanly


def _runtime_id(stack: LocalStack) -> str:
    path = stack.options.data_dir / "worker" / "runtime.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "the local worker did not register"
        time.sleep(0.1)
    return json.loads(path.read_text())["runtime_id"]


def _wait(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not hold within {timeout:g} s")


def test_a_local_worker_whose_registration_the_table_lost_registers_again_on_its_own(tmp_path):
    from tests.e2e.conftest import new_account
    from tests.support.hub import DEMO_LLAMA, make_demo_hub

    with make_demo_hub() as hub:
        options = StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(),
                               environment=hub.environment())
        stack = LocalStack(options).start()
        first_runtime = _runtime_id(stack)
        stack.stop()
        # The table forgets the runtime (a snapshot older than the registration, as after a crash
        # before continuous persistence), while the worker keeps its saved registration.
        (tmp_path / "state" / "dynamodb.jsonl").unlink()

        stack = LocalStack(StackOptions(**{**options.__dict__, "moto_port": free_port()})).start()
        try:
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                account = new_account(api)
                job_id = account.create_job(payload={"model": DEMO_LLAMA})
                assert account.wait_for_status(job_id, ("complete", "failed"), timeout=120)["status"] == "complete"
                runtime = _runtime_id(stack)
                assert runtime != first_runtime and account.job(job_id)["runtime_id"] == runtime
                assert stack.local_worker.report().restarts == 0  # the worker did it itself, without a restart
        finally:
            stack.stop()
        assert stack.worker.returncode == 0


def test_a_local_worker_that_is_killed_is_started_again_and_runs_jobs(tmp_path):
    from tests.e2e.conftest import new_account
    from tests.support.hub import DEMO_LLAMA, make_demo_hub

    said: list[str] = []
    with make_demo_hub() as hub:
        options = StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(),
                               environment=hub.environment(), announce=said.append)
        stack = LocalStack(options).start()
        try:
            runtime = _runtime_id(stack)
            killed = stack.worker
            command_line = Path(f"/proc/{killed.pid}/cmdline").read_bytes()
            environment = Path(f"/proc/{killed.pid}/environ").read_bytes().split(b"\0")
            token = next(v for v in environment if v.startswith(b"BERTH_WORKER_JOIN_TOKEN=")).split(b"=", 1)[1]
            assert token.startswith(b"bjt_") and token not in command_line and b"--join-token" not in command_line
            assert b"--die-with-parent" in command_line
            killed.kill()
            restarted = _wait(lambda: stack.worker if stack.worker is not killed else None, what="a new worker")
            assert said == ["the local worker was killed by SIGKILL; starting it again in 1 s"]
            report = _wait(lambda: (r := stack.local_worker.report()).state == "running" and r, what="running")
            assert report.healthy and report.restarts == 1 and report.pid == restarted.pid
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                account = new_account(api)
                job_id = account.create_job(payload={"model": DEMO_LLAMA})
                assert account.wait_for_status(job_id, ("complete", "failed"), timeout=120)["status"] == "complete"
                assert account.job(job_id)["runtime_id"] == runtime
        finally:
            stack.stop()


def test_a_local_worker_in_a_crash_loop_is_reported_as_failed_not_restarted_for_ever(tmp_path):
    from app import companions

    said: list[str] = []
    options = StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(), announce=said.append,
                           worker_args=["--max-concurrent-jobs", "0"],  # refused at once by the worker
                           worker_restart_delay=0.05, worker_max_quick_exits=3)
    stack = LocalStack(options).start()
    try:
        report = _wait(lambda: (r := stack.local_worker.report()).state == "failed" and r, what="failed")
        assert not report.healthy and report.restarts == 2 and report.pid is None
        assert "exited with code 2, 3 times in a row" in report.detail and "jobs will wait" in report.detail
        assert said[-1] == report.detail and len(said) == 3
        assert [r for r in companions.reports() if r.name == "local_worker"] == [report]  # what /status reads
        assert httpx.get(f"{stack.api_url}/v1/health").status_code == 200  # the rest of the stack runs on
        status = httpx.get(f"{stack.api_url}/status").json()
        assert status["service"]["status"] == "degraded" and status["companions"][0]["state"] == "failed"
    finally:
        stack.stop()
    assert not [r for r in companions.reports() if r.name == "local_worker"]


def test_everything_the_stack_writes_under_its_data_directory_is_private(tmp_path):
    data_dir = tmp_path / "berth"
    (data_dir / "state").mkdir(parents=True)
    os.chmod(data_dir, 0o755)  # as a data directory made before this rule
    (data_dir / "state" / "kms.json").write_text('{"keys": [], "aliases": {}}')
    os.chmod(data_dir / "state" / "kms.json", 0o644)
    stack = LocalStack(StackOptions(data_dir=data_dir, port=free_port(), moto_port=free_port(), worker=False)).start()
    try:
        signup = httpx.post(f"{stack.api_url}/v1/auth/signup",
                            json={"name": "Ada", "email": "ada@example.com", "password": "correct-horse"})
        assert signup.status_code == 201
    finally:
        stack.stop()
    written = [data_dir / "state" / name for name in ("dynamodb.jsonl", "kms.json")] + [data_dir / "stack.lock"]
    assert {path.name: _mode(path) for path in written} == {"dynamodb.jsonl": 0o600, "kms.json": 0o600,
                                                           "stack.lock": 0o600}
    assert _mode(data_dir) == _mode(data_dir / "state") == 0o700
    assert "ada@example.com" in (data_dir / "state" / "dynamodb.jsonl").read_text()


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_change_is_on_disk_within_about_a_second_with_no_stop_and_no_timer(tmp_path):
    stack = LocalStack(StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(), worker=False)).start()
    snapshot = tmp_path / "state" / "dynamodb.jsonl"
    try:
        signup = httpx.post(f"{stack.api_url}/v1/auth/signup",
                            json={"name": "Ada", "email": "ada@example.com", "password": "correct-horse"})
        assert signup.status_code == 201
        acknowledged = time.monotonic()
        _wait(lambda: snapshot.exists() and "ada@example.com" in snapshot.read_text(), 10, "the signup on disk")
        seconds = time.monotonic() - acknowledged
        stack.aws_process.kill()  # the AWS stand-in itself dies: what is on disk is all there is
        stack.aws_process.wait()
        assert "ada@example.com" in snapshot.read_text()
    finally:
        stack.stop()
    print(f"the signup was on disk {seconds:.2f} s after it was acknowledged")
