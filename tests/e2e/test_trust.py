"""Trust across processes, on the real local stack: operator rights that come only with a verified
address and go with an out-of-band revocation (`berth admin`, with AWS credentials); a sandbox's
env that only the sandbox ever sees in clear (not the table, not the queue), moving with its job
when its runtime is deleted; and a table that holds nothing a worker would accept a signature by."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
import pytest

from app.contract.messages import ControlMessage
from app.contract.sealing import RuntimeKeys, unseal
from app.contract.signing import CONTROL_SIGNATURE_HEADER, sign_control_request
from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, new_account
from tests.support.sandbox_fixtures import ECHO_SERVER

pytestmark = pytest.mark.e2e

OPERATOR = f"ops-{os.getpid()}-{uuid.uuid4().hex[:8]}@example.com"
SECRET = "s3cret"
ECHO = f"python3 {ECHO_SERVER}"
REPOSITORY = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    settings = {**FAST_SETTINGS, "BERTH_OPERATOR_EMAILS": json.dumps([OPERATOR])}
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600, environment=settings)
    running = LocalStack(options).start()
    yield running
    running.stop()


def _aws(stack, service: str):
    """A plain boto3 client of the stack's AWS stand-in: what someone reading the table or a queue sees."""
    environment = stack.aws_environment()
    return boto3.client(service, endpoint_url=stack.moto_url, region_name=environment["AWS_REGION"],
                        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"])


def _table_dump(stack) -> str:
    dynamodb = _aws(stack, "dynamodb")
    items, request = [], {"TableName": "berth"}
    while True:
        page = dynamodb.scan(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return json.dumps(items, default=str)
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _job_item(stack, workspace_id: str, job_id: str) -> dict:
    return _aws(stack, "dynamodb").get_item(TableName="berth", Key={"pk": {"S": f"WS#{workspace_id}"},
                                                                      "sk": {"S": f"JOB#{job_id}"}})["Item"]


def _mailed_token(stack, to: str, subject: str) -> str:
    outbox = stack.options.data_dir / "outbox"
    mail = [json.loads(path.read_text()) for path in sorted(outbox.glob("*.json"))]
    body = [m for m in mail if m["to"] == to and m["subject"] == subject][-1]["body"]
    return body.split("token=", 1)[1].split()[0]


def _berth_admin(stack, *args: str) -> subprocess.CompletedProcess:
    """`berth admin ...` as whoever runs the deployment: AWS credentials, no berth key."""
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "AWS_"))},
                   **stack.aws_environment()}
    return subprocess.run([sys.executable, "-m", "berth_cli", "admin", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPOSITORY, env=environment)


def test_operator_rights_need_a_verified_address_and_go_with_a_revocation(stack, api):
    signed_up = api.post("/v1/auth/signup", json={"name": "Ops", "email": OPERATOR, "password": "correct-horse"})
    assert signed_up.status_code == 201, signed_up.text
    session = {"Authorization": f"Bearer {signed_up.json()['token']}"}

    def mint_shared() -> httpx.Response:
        return api.post("/v1/cloud/join-tokens", headers=session, json={"shared": True})

    unverified = mint_shared()
    assert unverified.status_code == 403
    assert unverified.json()["error"] == (
        "only the platform operator can mint join tokens for shared runtimes, and operator rights come only with "
        f"a verified address: follow the link mailed to {OPERATOR} first")

    verified = api.post("/v1/auth/verify", json={"token": _mailed_token(stack, OPERATOR, "Confirm your berth email")})
    assert verified.status_code == 200
    minted = mint_shared()
    assert minted.status_code == 201, minted.text

    revoked = _berth_admin(stack, "revoke-operator", OPERATOR)
    assert revoked.returncode == 0, revoked.stderr
    assert f"{OPERATOR} is not the platform operator" in revoked.stdout
    after = mint_shared()  # the same session
    assert after.status_code == 403
    assert after.json()["error"] == "only the platform operator can mint join tokens for shared runtimes"
    registered = api.post("/v1/cloud/runtimes/register", json={"join_token": minted.json()["token"]})
    assert registered.status_code == 403  # the token it minted as operator died with the grant

    unknown = _berth_admin(stack, "grant-operator", "nobody@example.com")
    assert unknown.returncode == 1 and "no account with the address nobody@example.com" in unknown.stderr
    audit = api.get("/v1/cloud/audit", headers=session).json()["events"]
    assert "operator.revoke" in [event["action"] for event in audit]


@contextmanager
def _idle_runtime(account) -> Iterator[dict]:
    """A runtime that heartbeats and never polls: what reaches its queue stays there to be read."""
    response = account.post("/v1/cloud/runtimes/register", json={
        "join_token": account.join_token(), "name": "idle", "capabilities": ["mcp.test"], "queue_mode": "sqs"})
    assert response.status_code == 201, response.text
    registered = response.json()
    stop = threading.Event()

    def beat() -> None:
        headers = {"Authorization": f"Bearer {registered['runtime_token']}"}
        while not stop.wait(0.3):
            account.client.post("/v1/cloud/runtimes/heartbeat", headers=headers, json={})

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    try:
        yield registered
    finally:
        stop.set()
        beating.join()


def _wait_state(account, session_id: str, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sandbox = account.get(f"/v1/sandbox/sessions/{session_id}").json()
        if sandbox["state"] == state:
            return sandbox
        assert sandbox["state"] != "failed", sandbox
        time.sleep(0.1)
    raise AssertionError(f"sandbox {session_id} stayed {sandbox['state']}, expected {state}")


def _env_var(account, session_id: str, name: str) -> str:
    answer = account.post(f"/v1/sandbox/sessions/{session_id}/tools/call",
                          json={"name": "env_var", "arguments": {"name": name}})
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.text
    return answer.json()["result"]["structuredContent"]["result"]


def test_a_sandboxs_env_is_seen_by_the_sandbox_alone_and_moves_with_its_job(stack, api, workers):
    account = new_account(api)
    with _idle_runtime(account) as idle:
        created = account.post("/v1/sandbox/sessions", json={"start_command": ECHO, "env": {"TOKEN": SECRET}})
        assert created.status_code == 202, created.text
        session_id = created.json()["session_id"]

        # On the queue: sealed for the runtime it was sent to, nothing in clear.
        sqs = _aws(stack, "sqs")
        (message,) = sqs.receive_message(QueueUrl=idle["jobs_queue_url"], WaitTimeSeconds=5)["Messages"]
        assert SECRET not in message["Body"]
        sealed = json.loads(message["Body"])["message"]["secrets"]
        opened = unseal(RuntimeKeys.derive(idle["runtime_key"]).sealing, sealed, session_id)
        assert opened == {"env": {"TOKEN": SECRET}}

        # Its runtime is deleted: the job moves to a worker that can run it, sealed again for that one.
        worker = workers(account.join_token(), "--sandbox-tool-dir", str(ECHO_SERVER.parent))
        deleted = account.delete(f"/v1/cloud/runtimes/{idle['runtime_id']}")
        assert deleted.status_code == 200 and deleted.json()["jobs_requeued"] == 1, deleted.text
    _wait_state(account, session_id, "running")
    assert account.job(session_id)["runtime_id"] == worker.runtime_id
    assert _env_var(account, session_id, "TOKEN") == SECRET

    assert SECRET not in _table_dump(stack)
    item = _job_item(stack, account.workspace_id, session_id)
    assert item["secrets"]["S"].startswith("e1.") and "env" not in json.dumps(item["payload"])
    assert account.get(f"/v1/sandbox/sessions/{session_id}").json()["env"] == ["TOKEN"]

    # A new env reaches the running sandbox sealed, and the server has it from its next start.
    patched = account.client.patch(f"/api/sandboxes/{session_id}", headers=account.headers,
                                   json={"env": {"TOKEN": "n3w-" + SECRET}})
    assert patched.status_code == 200, patched.text
    assert account.post(f"/api/sandboxes/{session_id}/restart").json()["state"] == "running"
    assert _env_var(account, session_id, "TOKEN") == "n3w-" + SECRET
    assert SECRET not in _table_dump(stack)

    assert account.delete(f"/v1/sandbox/sessions/{session_id}").json()["status"] == "cancelled"
    assert "secrets" not in _job_item(stack, account.workspace_id, session_id)


def test_nothing_in_the_table_signs_a_control_request_a_worker_accepts(stack, api, workers):
    account = new_account(api)
    worker = workers(account.join_token(), "--sandbox-tool-dir", str(ECHO_SERVER.parent))
    registration = json.loads((worker.data_dir / "runtime.json").read_text())
    dynamodb = _aws(stack, "dynamodb")
    deadline = time.monotonic() + 10
    while True:  # the control URL comes with the registration, and again with every heartbeat
        runtime = dynamodb.get_item(TableName="berth", Key={"pk": {"S": f"WS#{account.workspace_id}"},
                                                            "sk": {"S": f"RT#{worker.runtime_id}"}})["Item"]
        if "control_url" in runtime or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    url = f"{runtime['control_url']['S']}/control"

    def signed_by(key: str) -> int:
        body = ControlMessage(request_id=f"ctl_{uuid.uuid4().hex}", workspace_id=account.workspace_id,
                              job_id="job_none", action="sandbox.inspect",
                              deadline=time.time() + 10).model_dump_json().encode()
        headers = {"Content-Type": "application/json", CONTROL_SIGNATURE_HEADER: sign_control_request(key, body,
                                                                                                        time.time())}
        return httpx.post(url, content=body, headers=headers, timeout=10).status_code

    # Every string the table holds (keys, digests, sealed values), and the credentials' digests.
    strings: set[str] = set()

    def collect(value) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                if name == "S":
                    strings.add(inner)
                    strings.update(part for part in inner.split("#") if len(part) >= 16)
                else:
                    collect(inner)
        elif isinstance(value, list):
            for inner in value:
                collect(inner)

    collect(json.loads(_table_dump(stack)))
    candidates = sorted(s for s in strings if len(s) >= 16)
    assert runtime["token_digest"]["S"] in candidates
    accepted = [candidate for candidate in candidates if signed_by(candidate) != 401]
    assert accepted == []
    assert signed_by(RuntimeKeys.derive(registration["runtime_key"]).signing) == 200  # the key itself does


def test_runtimes_and_join_tokens_from_the_cli(api, berth):
    account = new_account(api)
    email = account.get("/v1/auth/me").json()["user"]["email"]
    login = berth("login", "--api", berth.api_url, "--email", email, "--password-stdin", "--tier", "admin",
                  stdin="correct-horse\n")
    assert login.returncode == 0, login.stderr

    created = berth("join-tokens", "create", "--uses", "2", "--name", "rack-1")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("bjt_") and "shown only now" in created.stderr
    (token,) = json.loads(berth("join-tokens", "list", "--json").stdout)["join_tokens"]
    assert token["name"] == "rack-1" and token["uses_left"] == 2 and secret.startswith(token["prefix"])

    runtime = api.post("/v1/cloud/runtimes/register", json={"join_token": secret, "name": "rack-1-a"}).json()
    listed = berth("runtimes", "list")
    assert listed.returncode == 0 and runtime["runtime_id"] in listed.stdout and "rack-1-a" in listed.stdout
    deleted = berth("runtimes", "delete", runtime["runtime_id"])
    assert deleted.returncode == 0, deleted.stderr
    assert f"runtime {runtime['runtime_id']} deleted; 0 job(s) dispatched again, 0 ended" in deleted.stdout
    assert api.post("/v1/cloud/runtimes/heartbeat", json={},
                    headers={"Authorization": f"Bearer {runtime['runtime_token']}"}).status_code == 401

    revoked = berth("join-tokens", "delete", token["token_id"], "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout) == {"ok": True, "token_id": token["token_id"]}
    assert api.post("/v1/cloud/runtimes/register", json={"join_token": secret}).status_code == 401
    again = berth("runtimes", "delete", runtime["runtime_id"])
    assert again.returncode == 1 and f"no runtime {runtime['runtime_id']} (HTTP 404" in again.stderr
