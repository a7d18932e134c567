"""The direct control channel on the real local stack: the API POSTs signed control messages to
a worker's endpoint, and falls back to the control queue when the endpoint cannot be reached."""

import asyncio
import hashlib
import json
import time
import uuid

import httpx
import pytest

from app.contract.messages import ControlMessage
from app.contract.sealing import RuntimeKeys
from app.contract.signing import CONTROL_SIGNATURE_HEADER, sign_control_request
from app import composition
from app.domain.runtimes import Runtime
from app.local.stack import free_port
from tests.e2e.conftest import WorkerProcess, new_account
from tests.support.sandbox_fixtures import ECHO_SERVER, call_directly, python_command

pytestmark = pytest.mark.e2e

ECHO = f"python3 {ECHO_SERVER}"
CALLS = [("add", {"a": 2, "b": 3}), ("echo", {"text": "über"})]


def _workspace(stack, hub, tmp_path_factory, name: str, *args: str):
    client = httpx.Client(base_url=stack.api_url, timeout=30)
    account = new_account(client)
    data_dir = tmp_path_factory.mktemp(name) / "worker"
    account.worker = WorkerProcess(stack, hub, data_dir, account.join_token(),
                                   "--sandbox-tool-dir", str(ECHO_SERVER.parent), *args)
    account.runtime_id = account.worker.runtime_id
    return client, account


@pytest.fixture(scope="module")
def direct(stack, hub, tmp_path_factory):
    """A workspace whose worker serves its control endpoint on loopback."""
    client, account = _workspace(stack, hub, tmp_path_factory, "direct")
    yield account
    account.worker.stop()
    client.close()


@pytest.fixture(scope="module")
def fallback(stack, hub, tmp_path_factory):
    """A workspace whose worker serves an endpoint but advertises a closed port: the API can
    deliver nothing there, so every control request goes through the queue."""
    client, account = _workspace(stack, hub, tmp_path_factory, "fallback",
                                 "--control-url", f"http://127.0.0.1:{free_port()}")
    yield account
    account.worker.stop()
    client.close()


def _runtime(account) -> Runtime:
    deadline = time.monotonic() + 10
    while True:  # the URL arrives with the registration, and again with every heartbeat
        runtime = composition.services().store.runtimes.get(account.workspace_id, account.runtime_id)
        assert runtime is not None
        if runtime.control_url or time.monotonic() > deadline:
            return runtime
        time.sleep(0.1)


def _start(account) -> str:
    response = account.post("/v1/sandbox/sessions", json={"start_command": ECHO})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    deadline = time.monotonic() + 60
    while account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] != "running":
        assert time.monotonic() < deadline, f"sandbox {session_id} did not start"
        time.sleep(0.1)
    return session_id


def _calls(account, session_id) -> list[dict]:
    answers = [account.post(f"/v1/sandbox/sessions/{session_id}/tools/call", json={"name": name, "arguments": args})
               for name, args in CALLS]
    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    return [answer.json() for answer in answers]


def test_a_tool_call_through_the_direct_channel_matches_the_queue_path(direct, fallback):
    runtime = _runtime(direct)
    assert runtime.control_url and runtime.control_url.startswith("http://127.0.0.1:")
    direct_session, queued_session = _start(direct), _start(fallback)

    # While the direct runtime's item names a control queue nobody reads, only its endpoint can
    # answer: a request that took the queue would time out, and a cancel would never arrive.
    services = composition.services()  # the API's: it runs in this process
    sqs = services.aws.client("sqs")
    decoy = sqs.create_queue(QueueName=f"berth-decoy-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    store = services.store
    store.runtimes.move_queues(runtime, runtime.jobs_queue_url, decoy)
    store.runtimes.forget(direct.workspace_id)  # the API process is this one: no cached listing
    try:
        through_endpoint = _calls(direct, direct_session)
        tools = direct.get(f"/v1/sandbox/sessions/{direct_session}/tools")
        assert tools.status_code == 200 and {"echo", "add"} <= {t["name"] for t in tools.json()["tools"]}
        cancelled = direct.delete(f"/v1/sandbox/sessions/{direct_session}")
        assert cancelled.json() == {"ok": True, "status": "cancelled"}  # the worker stopped it and said so
        assert sqs.get_queue_attributes(QueueUrl=decoy, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] == "0"
    finally:
        store.runtimes.move_queues(runtime, runtime.jobs_queue_url, runtime.control_queue_url)
        store.runtimes.forget(direct.workspace_id)
        sqs.delete_queue(QueueUrl=decoy)

    through_queue = _calls(fallback, queued_session)
    without_berth = asyncio.run(call_directly(python_command(ECHO_SERVER), CALLS))
    assert [call["ok"] for call in through_endpoint] == [True, True]
    assert through_endpoint == through_queue
    assert [call["result"] for call in through_endpoint] == without_berth
    assert fallback.delete(f"/v1/sandbox/sessions/{queued_session}").json() == {"ok": True, "status": "cancelled"}


def test_the_endpoint_refuses_unsigned_forged_stale_and_replayed_requests(direct):
    session_id = _start(direct)
    url = f"{_runtime(direct).control_url}/control"
    registration = json.loads((direct.worker.data_dir / "runtime.json").read_text())
    key = RuntimeKeys.derive(registration["runtime_key"]).signing
    token_digest = hashlib.sha256(registration["runtime_token"].encode()).hexdigest()  # what the table holds

    def body(request_id: str, deadline_in: float = 10) -> bytes:
        return ControlMessage(request_id=request_id, workspace_id=direct.workspace_id, job_id=session_id,
                              action="tools.list", deadline=time.time() + deadline_in).model_dump_json().encode()

    def post(content: bytes, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers[CONTROL_SIGNATURE_HEADER] = signature
        return httpx.post(url, content=content, headers=headers, timeout=10)

    genuine = body("ctl_e2e_genuine")
    answered = post(genuine, sign_control_request(key, genuine, time.time()))
    assert answered.status_code == 200, answered.text
    assert answered.json()["ok"] is True and "echo" in {t["name"] for t in answered.json()["result"]["tools"]}

    replayed = post(genuine, sign_control_request(key, genuine, time.time()))
    assert replayed.status_code == 401 and "already received" in replayed.json()["error"]

    other = body("ctl_e2e_other")
    refusals = {
        "unsigned": post(other, None),
        "forged": post(other, sign_control_request(hashlib.sha256(b"brt_not-the-token").hexdigest(), other,
                                                   time.time())),
        "by the token digest": post(other, sign_control_request(token_digest, other, time.time())),
        "tampered": post(other.replace(b"tools.list", b"sandbox.stop"), sign_control_request(key, other, time.time())),
        "stale": post(other, sign_control_request(key, other, time.time() - 120)),
    }
    expired = body("ctl_e2e_expired", deadline_in=-1)
    refusals["expired"] = post(expired, sign_control_request(key, expired, time.time()))
    assert {name: r.status_code for name, r in refusals.items()} == dict.fromkeys(refusals, 401)
    assert all(r.json()["success"] is False and r.json()["error"] for r in refusals.values())

    # None of that reached the sandbox: it still runs and answers through the API.
    assert direct.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] == "running"
    assert direct.post(f"/v1/sandbox/sessions/{session_id}/tools/call",
                       json={"name": "echo", "arguments": {"text": "still here"}}).json()["ok"] is True
    direct.delete(f"/v1/sandbox/sessions/{session_id}")


def test_a_dead_control_url_falls_back_to_the_queue(fallback):
    runtime = _runtime(fallback)
    with pytest.raises(httpx.ConnectError):  # nothing listens where it points
        httpx.post(f"{runtime.control_url}/control", content=b"{}", timeout=5)
    session_id = _start(fallback)
    tools = fallback.get(f"/v1/sandbox/sessions/{session_id}/tools")
    assert tools.status_code == 200 and {"echo", "add"} <= {t["name"] for t in tools.json()["tools"]}
    assert [call["ok"] for call in _calls(fallback, session_id)] == [True, True]
    assert fallback.post(f"/api/sandboxes/{session_id}/restart").json()["state"] == "running"
    assert fallback.delete(f"/v1/sandbox/sessions/{session_id}").json() == {"ok": True, "status": "cancelled"}
