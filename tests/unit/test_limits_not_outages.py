"""Limits that must not turn into outages (issue 9): what a runtime or a client can send is stored
within DynamoDB's limits or refused with a 4xx that says why; never a 500."""

import base64
import json

import pytest

from app import composition
from app.contract.messages import EVENT_BATCH_MAX_EVENTS, EVENT_DATA_MAX_BYTES, EventStatus
from app.domain.jobs import JobEvent
from app.errors import PayloadTooLarge
from app.store.table import TRANSACT_MAX_WRITES
from tests.conftest import bearer, signup
from tests.support.protocol_runtime import ISOLATED, SANDBOX_LABELS, ProtocolRuntime


@pytest.fixture
def user(client) -> str:
    return signup(client)["token"]


def _running_job(client, user, runtime: ProtocolRuntime, job_type="agent.run", payload=None):
    response = client.post("/v1/jobs", headers=bearer(user),
                           json={"type": job_type, "payload": payload or {"agent": "a"}})
    assert response.status_code == 202, response.text
    [message] = runtime.messages()
    return message, runtime.claim(message)


def _progress(first_seq: int, count: int, **data) -> list[dict]:
    return [{"seq": seq, "step": "agent", "status": "running", "message": f"step {seq}", "data": data}
            for seq in range(first_seq, first_seq + count)]


def _stored_seqs(client, user, job_id) -> list[int]:
    """Read from the store (the stream of a running job would stay open for its window)."""
    workspace_id = client.get("/v1/auth/me", headers=bearer(user)).json()["user"]["workspace_id"]
    return [event.seq for event in composition.services().store.jobs.events_after(workspace_id, job_id, 0)]


# --- a full batch of events --------------------------------------------------------------------


def test_the_store_writes_a_claimants_events_in_parts_each_within_dynamodbs_limit_and_fenced(store):
    events = [JobEvent(seq=seq, step="agent", status=EventStatus.running) for seq in range(1, 251)]
    parts = list(store.jobs.progress_in_parts("ws_a", "job_1", "clm_1", events, "now"))
    assert [len(part) for part, _ in parts] == [99, 99, 52]
    for part, writes in parts:
        assert len(writes) <= TRANSACT_MAX_WRITES
        assert [write.must_not_exist for write in writes[:-1]] == [True] * len(part)  # only-if-new
        fence = writes[-1]
        assert fence.condition.equals == {"claim_id": "clm_1", "status": "running"}


def test_a_batch_of_100_events_is_stored_once_and_the_job_runs_on(client, user):
    runtime = ProtocolRuntime.of_workspace(client, user)
    message, claim = _running_job(client, user, runtime)
    batch = _progress(claim["next_seq"], EVENT_BATCH_MAX_EVENTS)

    first = runtime.events(message.workspace_id, message.job_id, claim["claim_id"], batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 100, "duplicates": 0, "job_status": "running", "cancel_requested": False}
    again = runtime.events(message.workspace_id, message.job_id, claim["claim_id"], batch)  # its answer was lost
    assert again.status_code == 200 and again.json()["accepted"] == 0 and again.json()["duplicates"] == 100
    assert _stored_seqs(client, user, message.job_id) == list(range(1, 103))


def test_a_batch_overlapping_events_stored_before_stores_only_the_new_ones(client, user):
    runtime = ProtocolRuntime.of_workspace(client, user)
    message, claim = _running_job(client, user, runtime)
    start = claim["next_seq"]
    runtime.events(message.workspace_id, message.job_id, claim["claim_id"], _progress(start, 60))

    overlapping = runtime.events(message.workspace_id, message.job_id, claim["claim_id"], _progress(start, 100))
    assert overlapping.status_code == 200, overlapping.text
    assert (overlapping.json()["accepted"], overlapping.json()["duplicates"]) == (40, 60)
    assert _stored_seqs(client, user, message.job_id) == list(range(1, start + 100))


def test_a_stale_claims_full_batch_is_409_and_stores_nothing(client, user):
    runtime = ProtocolRuntime.of_workspace(client, user)
    message, claim = _running_job(client, user, runtime)
    forged = runtime.events(message.workspace_id, message.job_id, "clm_not_mine", _progress(claim["next_seq"], 100))
    assert forged.status_code == 409
    assert _stored_seqs(client, user, message.job_id) == [1, 2]


def test_an_event_whose_data_is_over_the_contracts_limit_is_413_and_none_of_its_batch_is_stored(client, user):
    runtime = ProtocolRuntime.of_workspace(client, user)
    message, claim = _running_job(client, user, runtime)
    batch = _progress(claim["next_seq"], 2)
    batch[1]["data"] = {"blob": "x" * EVENT_DATA_MAX_BYTES}

    refused = runtime.events(message.workspace_id, message.job_id, claim["claim_id"], batch)
    assert refused.status_code == 413
    body = refused.json()
    assert body["success"] is False and f"event {batch[1]['seq']}" in body["error"]
    assert str(EVENT_DATA_MAX_BYTES) in body["error"]
    assert _stored_seqs(client, user, message.job_id) == [1, 2]


def test_a_batch_repeating_a_sequence_number_is_422(client, user):
    runtime = ProtocolRuntime.of_workspace(client, user)
    message, claim = _running_job(client, user, runtime)
    seq = claim["next_seq"]
    batch = [*_progress(seq, 3), {"seq": seq + 1, "step": "agent", "status": "ok"}]

    refused = runtime.events(message.workspace_id, message.job_id, claim["claim_id"], batch)
    assert refused.status_code == 422
    assert f"repeated: [{seq + 1}]" in refused.json()["error"]
    assert _stored_seqs(client, user, message.job_id) == [1, 2]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e300", "1" + "0" * 40 + "1"])
def test_a_number_dynamodb_cannot_hold_is_422_from_a_runtime_and_from_a_client(client, user, number):
    runtime = ProtocolRuntime.of_workspace(client, user)
    message, claim = _running_job(client, user, runtime)
    raw = json.dumps({"claim_id": claim["claim_id"], "events": [
        {"seq": claim["next_seq"], "step": "agent", "status": "ok", "data": {"n": "N"}}]}).replace('"N"', number)
    refused = client.post(f"/v1/cloud/runtimes/jobs/{message.workspace_id}/{message.job_id}/events",
                          headers={**runtime.headers, "Content-Type": "application/json"}, content=raw)
    assert refused.status_code == 422 and "DynamoDB" in refused.json()["error"]

    job = json.dumps({"type": "agent.run", "payload": {"agent": "a", "input": {"n": "N"}}}).replace('"N"', number)
    created = client.post("/v1/jobs", headers={**bearer(user), "Content-Type": "application/json"}, content=job)
    assert created.status_code == 422 and "DynamoDB" in created.json()["error"]


# --- what a client sends ------------------------------------------------------------------------


def _cursor(plain: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


@pytest.mark.parametrize("tamper", [
    lambda plain: {"pk": plain["pk"]},  # a key missing
    lambda plain: {**plain, "open_pk": "JOBS#waiting"},  # a key too many
    lambda plain: {**plain, "sk": "KEY#0001"},  # the right partition, outside the listing (API keys)
    lambda plain: {**plain, "sk": 7},  # not a string
])
def test_a_tampered_pagination_cursor_is_400(client, user, tamper):
    for _ in range(3):
        client.post("/v1/jobs", headers=bearer(user), json={"type": "agent.run", "payload": {"agent": "a"}, "wait": True})
    page = client.get("/v1/jobs", headers=bearer(user), params={"limit": 1}).json()
    plain = json.loads(base64.urlsafe_b64decode(page["next_cursor"] + "=" * (-len(page["next_cursor"]) % 4)))
    assert set(plain) == {"pk", "sk"}
    assert client.get("/v1/jobs", headers=bearer(user), params={"cursor": page["next_cursor"]}).status_code == 200

    answer = client.get("/v1/jobs", headers=bearer(user), params={"cursor": _cursor(tamper(plain))})
    assert answer.status_code == 400, answer.text
    assert "invalid pagination cursor" in answer.json()["error"]


def test_a_job_whose_payload_would_not_fit_its_record_is_413(client, user):
    big = {"type": "agent.run", "payload": {"agent": "a", "input": {"text": "x" * 450_000}}}
    refused = client.post("/v1/jobs", headers=bearer(user), json=big)
    assert refused.status_code == 413 and "the limit is" in refused.json()["error"]
    assert client.get("/v1/jobs", headers=bearer(user)).json()["jobs"] == []  # nothing stored


def test_a_sandbox_whose_env_and_labels_would_not_fit_is_413_at_creation_and_on_change(client, user):
    env = {f"KEY_{n}": "v" * 4_500 for n in range(100)}
    refused = client.post("/v1/sandbox/sessions", headers=bearer(user), json={"start_command": "node s.js", "env": env})
    assert refused.status_code == 413

    created = client.post("/api/sandboxes", headers=bearer(user), json={"start_command": "node s.js", "wait": True}).json()
    labels = {f"label-{n}": "v" * 8_000 for n in range(50)}
    changed = client.patch(f"/api/sandboxes/{created['id']}", headers=bearer(user), json={"labels": labels})
    assert changed.status_code == 413, changed.text
    assert client.get(f"/api/sandboxes/{created['id']}", headers=bearer(user)).json()["labels"] == {}


def test_an_oversized_record_is_refused_before_any_request_and_by_dynamodb_as_413(store):
    with pytest.raises(PayloadTooLarge):
        store.table.put({"pk": "WS#a", "sk": "X#1", "blob": "x" * 410_000})
    store.table.put({"pk": "WS#a", "sk": "X#2"})
    with pytest.raises(PayloadTooLarge):  # an update's result is known to DynamoDB alone
        store.table.update("WS#a", "X#2", set={"blob": "x" * 410_000})


def _running_http_sandbox(client, user) -> str:
    runtime = ProtocolRuntime.of_workspace(client, user, capabilities=["mcp.test"], offers=ISOLATED,
                                           labels=SANDBOX_LABELS)
    created = client.post("/v1/sandbox/sessions", headers=bearer(user),
                          json={"start_command": "python3 server.py", "transport": "http", "runtime": "python"})
    assert created.status_code == 202, created.text
    [message] = runtime.messages()
    runtime.claim(message)
    return message.job_id


@pytest.mark.parametrize("path, query, fragment", [
    ("a" * 4001, "", "path is 4001 characters"),
    ("mcp", "q=" + "a" * 7999, "query is 8001 characters"),
])
def test_a_proxied_path_or_query_longer_than_a_runtime_accepts_is_414(client, user, path, query, fragment):
    sandbox_id = _running_http_sandbox(client, user)
    url = f"/api/runtime/proxy/{sandbox_id}/{path}" + (f"?{query}" if query else "")
    answer = client.get(url, headers=bearer(user))
    assert answer.status_code == 414, answer.text
    assert fragment in answer.json()["error"]


def test_a_proxy_token_no_runtime_could_have_issued_is_400(client, user):
    sandbox_id = _running_http_sandbox(client, user)
    answer = client.get(f"/api/runtime/proxy/{sandbox_id}/mcp",
                        headers={**bearer(user), "X-Berth-Proxy-Token": "t" * 5000})
    assert answer.status_code == 400 and "proxy token" in answer.json()["error"]


@pytest.mark.parametrize("route", ["/ack", "/visibility"])
def test_a_bogus_queue_receipt_is_404(client, user, route):
    runtime = ProtocolRuntime.of_workspace(client, user)
    answer = runtime.post(route, {"queue": "jobs", "receipt": "not-a-receipt", "visibility_seconds": 10})
    assert answer.status_code == 404, answer.text  # any string may be a receipt: this one is not there
    assert "receipt" in answer.json()["error"]


def test_a_receipt_of_a_message_no_longer_leased_is_refused_with_a_4xx(client, user):
    runtime = ProtocolRuntime.of_workspace(client, user)
    client.post("/v1/jobs", headers=bearer(user), json={"type": "agent.run", "payload": {"agent": "a"}})
    [leased] = runtime.post("/lease", {"queue": "jobs", "wait_seconds": 0}).json()["messages"]
    assert runtime.post("/ack", {"queue": "jobs", "receipt": leased["receipt"]}).status_code == 200
    late = runtime.post("/visibility", {"queue": "jobs", "receipt": leased["receipt"], "visibility_seconds": 10})
    assert 400 <= late.status_code < 500, late.text
