"""The job's way from POST to a runtime and back, driven through the API on moto: one
transaction per step, the claim recording `start`, and a freed slot going to a waiting job."""

import json

from app import composition
from app.contract.messages import QueueEnvelope
from app.store import keys
from tests.conftest import bearer, signup


def _register(client, token: str, slots: int) -> dict:
    join = client.post("/v1/cloud/join-tokens", headers=bearer(token), json={}).json()
    response = client.post("/v1/cloud/runtimes/register", json={
        "join_token": join["token"], "capabilities": ["agent.run"], "max_concurrent_jobs": slots,
        "queue_mode": "sqs"})
    assert response.status_code == 201, response.text
    return response.json()


def _post_job(client, token: str) -> str:
    """An agent.run job, which no runtime here offers: it waits (`wait`)."""
    response = client.post("/v1/jobs", headers=bearer(token),
                           json={"type": "agent.run", "payload": {"agent": "a"}, "wait": True})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _messages(queue_url: str) -> list:
    received = composition.services().aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                                 MessageSystemAttributeNames=["ApproximateReceiveCount"])
    return [QueueEnvelope.model_validate_json(m["Body"]).message for m in received.get("Messages", [])]


def _events(client, token: str, job_id: str) -> list[dict]:
    response = client.get(f"/v1/jobs/{job_id}/events", headers=bearer(token))
    frames = [block for block in response.text.split("\n\n") if block.startswith("id: ")]
    return [json.loads(frame.split("data: ", 1)[1]) for frame in frames]


def _claim(client, runtime: dict, message, **extra):
    body = {"dispatch": message.dispatch, "worker_id": "w1", "start_seq": message.start_seq, "attempt": 1, **extra}
    return client.post(f"/v1/cloud/runtimes/jobs/{message.workspace_id}/{message.job_id}/claim",
                       headers=bearer(runtime["runtime_token"]), json=body)


def test_a_claim_records_the_start_event_and_a_duplicate_is_refused(client):
    token = signup(client)["token"]
    runtime = _register(client, token, slots=2)
    job_id = _post_job(client, token)
    [message] = _messages(runtime["jobs_queue_url"])
    assert message.job_id == job_id and message.start_seq == 2  # after the `queued` event

    first = _claim(client, runtime, message).json()
    assert first["claimed"] and first["next_seq"] == 3
    again = _claim(client, runtime, message).json()
    assert not again["claimed"] and again["reason"] == "job is claimed by a live worker"

    events = _events_after_progress(client, token, runtime, job_id, first["claim_id"])
    assert [(e["seq"], e["step"], e["status"]) for e in events] == [
        (1, "job", "queued"), (2, "job", "start"), (3, "agent", "running"), (4, "job", "complete")]
    assert events[1]["data"]["runtime_id"] == runtime["runtime_id"]


def _events_after_progress(client, token, runtime, job_id, claim_id):
    workspace_id = client.get("/v1/auth/me", headers=bearer(token)).json()["user"]["workspace_id"]
    path = f"/v1/cloud/runtimes/jobs/{workspace_id}/{job_id}/events"
    progress = {"claim_id": claim_id, "events": [{"seq": 3, "step": "agent", "status": "running"}]}
    assert client.post(path, headers=bearer(runtime["runtime_token"]), json=progress).json()["accepted"] == 1
    # The same batch again (its answer lost): stored once.
    assert client.post(path, headers=bearer(runtime["runtime_token"]), json=progress).json()["duplicates"] == 1
    final = {"claim_id": claim_id, "events": [{"seq": 4, "step": "job", "status": "complete", "data": {"ok": 1}}]}
    assert client.post(path, headers=bearer(runtime["runtime_token"]), json=final).json()["job_status"] == "complete"
    return _events(client, token, job_id)


def test_a_stale_claim_cannot_post_progress(client):
    token = signup(client)["token"]
    runtime = _register(client, token, slots=1)
    job_id = _post_job(client, token)
    [message] = _messages(runtime["jobs_queue_url"])
    assert _claim(client, runtime, message).json()["claimed"]
    path = f"/v1/cloud/runtimes/jobs/{message.workspace_id}/{job_id}/events"
    forged = {"claim_id": "clm_not_mine", "events": [{"seq": 3, "step": "agent", "status": "running"}]}
    assert client.post(path, headers=bearer(runtime["runtime_token"]), json=forged).status_code == 409
    assert [e["seq"] for e in _events(client, token, job_id)] == [1, 2]


def test_a_finished_job_hands_its_slot_to_a_waiting_job(client):
    token = signup(client)["token"]
    runtime = _register(client, token, slots=1)
    first_id = _post_job(client, token)
    second_id = _post_job(client, token)
    [message] = _messages(runtime["jobs_queue_url"])
    assert message.job_id == first_id
    second = client.get(f"/v1/jobs/{second_id}", headers=bearer(token)).json()
    assert second["status"] == "queued" and second["runtime_id"] is None  # no slot: it waits

    claim = _claim(client, runtime, message).json()
    final = {"claim_id": claim["claim_id"], "events": [{"seq": 3, "step": "job", "status": "complete"}]}
    client.post(f"/v1/cloud/runtimes/jobs/{message.workspace_id}/{first_id}/events",
                headers=bearer(runtime["runtime_token"]), json=final)

    # No sweep ran: finishing the first job dispatched the second at once.
    [handed_over] = _messages(runtime["jobs_queue_url"])
    assert handed_over.job_id == second_id
    assert client.get(f"/v1/jobs/{second_id}", headers=bearer(token)).json()["runtime_id"] == runtime["runtime_id"]


def test_job_creation_records_audit_and_usage_with_the_job(client):
    token = signup(client)["token"]
    job_id = _post_job(client, token)
    entries = client.get("/v1/cloud/audit", headers=bearer(token)).json()["events"]
    assert any(e["action"] == "job.create" and e["target"] == job_id for e in entries)
    usage = client.get("/v1/cloud/usage", headers=bearer(token)).json()
    assert usage["totals"]["jobs"]["agent.run"] == 1


def test_a_full_workspace_gets_429_and_nothing_is_stored(client, monkeypatch):
    monkeypatch.setenv("BERTH_MAX_CONCURRENT_JOBS", "1")
    composition.reset()
    token = signup(client)["token"]
    _post_job(client, token)
    response = client.post("/v1/jobs", headers=bearer(token),
                           json={"type": "agent.run", "payload": {"agent": "a"}, "wait": True})
    assert response.status_code == 429 and "max_concurrent_jobs" in response.json()["error"]
    listed = client.get("/v1/jobs", headers=bearer(token)).json()["jobs"]
    assert len(listed) == 1
    usage = client.get("/v1/cloud/usage", headers=bearer(token)).json()
    assert usage["totals"]["jobs"]["agent.run"] == 1  # the refused job was not metered


def test_a_runtime_full_since_it_was_listed_costs_a_retry_not_a_slot(client, store):
    token = signup(client)["token"]
    full_since, roomy = _register(client, token, slots=1), _register(client, token, slots=3)
    runtimes, workspace_id = store.runtimes, full_since["workspace_id"]
    # Ranked after the idle one.
    store.table.update(*keys.runtime(workspace_id, roomy["runtime_id"]), set={"active_jobs": 1})
    runtimes.forget(workspace_id)
    assert len(runtimes.listed(workspace_id)) == 2  # cached: both with room
    # Behind the cache's back.
    store.table.update(*keys.runtime(workspace_id, full_since["runtime_id"]), set={"active_jobs": 1})

    job_id = _post_job(client, token)
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()
    assert job["runtime_id"] == roomy["runtime_id"]
    assert _messages(full_since["jobs_queue_url"]) == []
    assert [message.job_id for message in _messages(roomy["jobs_queue_url"])] == [job_id]
    slots = {r.runtime_id: r.active_jobs for r in runtimes.listed(workspace_id, fresh=True)}
    assert slots == {full_since["runtime_id"]: 1, roomy["runtime_id"]: 2}  # one slot taken, on the runtime used
