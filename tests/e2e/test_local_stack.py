"""`berth up` as a user runs it: a real process, real ports, Ctrl-C, restart, --fresh."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from app.local.stack import LocalStack, StackOptions, free_port

pytestmark = pytest.mark.e2e


def _start_berth_up(data_dir, port, moto_port, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "AWS_"))}
    command = [sys.executable, "-m", "berth_cli", "up", "--port", str(port),
               "--moto-port", str(moto_port), "--data-dir", str(data_dir), "--no-worker", *extra]
    # Its own process group, as a shell gives a command: Ctrl-C signals the whole group.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("berth up did not answer /health")


def _stop(process) -> str:
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal: every process of the group
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_berth_up_serves_stops_cleanly_and_keeps_state(tmp_path):
    port, moto_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    process = _start_berth_up(tmp_path, port, moto_port)
    signup = httpx.post(f"{api}/v1/auth/signup",
                        json={"name": "Ada", "email": "ada@example.com", "password": "correct-horse"})
    assert signup.status_code == 201
    key = httpx.post(f"{api}/api/auth/keys/generate", headers={"Authorization": f"Bearer {signup.json()['token']}"},
                     json={"name": "kept"}).json()["key"]
    output = _stop(process)
    assert f"{api}/api-docs" in output and "stopped; state saved." in output

    process = _start_berth_up(tmp_path, port, moto_port)
    login = httpx.post(f"{api}/v1/auth/login", json={"email": "ada@example.com", "password": "correct-horse"})
    assert login.status_code == 200
    assert httpx.get(f"{api}/v1/auth/me", headers={"X-API-Key": key}).status_code == 200
    assert httpx.get(f"{api}/v1/ready").json()["ready"] is True
    _stop(process)

    process = _start_berth_up(tmp_path, port, moto_port, "--fresh")
    assert httpx.post(f"{api}/v1/auth/login",
                      json={"email": "ada@example.com", "password": "correct-horse"}).status_code == 401
    _stop(process)


def test_snapshot_restores_thousands_of_items_and_the_kms_key(tmp_path):
    options = StackOptions(data_dir=tmp_path, port=free_port(), moto_port=free_port(), worker=False)
    stack = LocalStack(options).start()
    items = [{"pk": f"WS#load{n % 20}", "sk": f"ITEM#{n:05d}", "n": n, "payload": {"text": "x" * 100}}
             for n in range(3000)]
    stack.services.store.table.batch_put(items)
    kms = stack.services.aws.client("kms")
    ciphertext = kms.encrypt(KeyId=stack.services.settings.kms_key_alias, Plaintext=b"provider-token")["CiphertextBlob"]
    stack.stop()

    restarted = LocalStack(StackOptions(data_dir=tmp_path, port=options.port, moto_port=free_port(), worker=False)).start()
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
