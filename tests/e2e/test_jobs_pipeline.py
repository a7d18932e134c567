"""The queue pipeline end to end: API → SQS → worker processes → events → SSE, with failures.

Everything here is real: the embedded moto server, the API on uvicorn, worker subprocesses,
huggingface_hub against the local hub. Nothing of berth's own is mocked.
"""

import json
import signal
import time

import pytest

from app.contract.messages import JobMessage, JobType, QueueEnvelope
from app.domain.runtimes import Runtime
from tests.e2e.conftest import new_account
from tests.support.hub import DEMO_BERT, DEMO_LLAMA

pytestmark = pytest.mark.e2e


@pytest.fixture
def slow_model(hub):
    """A model whose hub answers take 3 s: jobs on it stay mid-flight long enough to interfere."""
    hub.set_latency(DEMO_BERT, 3.0)
    yield DEMO_BERT
    hub.set_latency(DEMO_BERT, 0)


def _assert_contiguous(events: list[dict]) -> None:
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"gap or duplicate in {seqs}"


def _job_steps(events, status):
    return [e for e in events if e["step"] == "job" and e["status"] == status]


def test_a_job_runs_on_a_registered_worker_and_streams_its_events(account, workers, hub):
    worker = workers(account.join_token())
    runtimes = account.get("/v1/cloud/runtimes").json()["runtimes"]
    assert [(r["runtime_id"], r["status"]) for r in runtimes] == [(worker.runtime_id, "online")]
    assert "model.inspect" in account.get("/v1/capabilities").json()["capabilities"]

    job_id = account.create_job(payload={"model": DEMO_LLAMA})
    events = account.events(job_id)
    _assert_contiguous(events)
    assert [e["status"] for e in events if e["step"] == "job"] == ["queued", "start", "complete"]
    job = account.wait_for_status(job_id, "complete")
    assert job["runtime_id"] == worker.runtime_id
    assert job["result"]["architecture"] == "LlamaForCausalLM"
    assert job["result"]["revision"] == hub.head_sha(DEMO_LLAMA)
    assert job["result"]["vllm"]["servable"] is True

    resumed = account.events(job_id, last_event_id=2)  # reconnect after the second event
    assert [e["seq"] for e in resumed] == [e["seq"] for e in events[2:]]


def test_runtime_listing_capabilities_usage_and_audit(account, workers):
    worker = workers(account.join_token(), "--label", "zone=lab")
    job_id = account.create_job(payload={"model": DEMO_LLAMA})
    account.wait_for_status(job_id, "complete")
    listed = account.get("/v1/runtimes").json()["runtimes"][0]
    assert listed["labels"]["zone"] == "lab" and listed["capabilities"] and listed["max_concurrent_jobs"] >= 1
    usage = account.get("/v1/cloud/usage").json()
    assert usage["totals"]["jobs"]["model.inspect"] == 1
    assert usage["totals"]["runtime_seconds"]["model.inspect"] > 0
    actions = [e["action"] for e in account.get("/v1/cloud/audit").json()["events"]]
    for expected in ("auth.signup", "join_token.create", "runtime.register", "job.create"):
        assert expected in actions
    assert worker.runtime_id


def test_job_waits_for_a_runtime_and_is_dispatched_when_one_comes(account, workers):
    job_id = account.create_job(payload={"model": DEMO_LLAMA})
    time.sleep(1)
    assert account.job(job_id)["status"] == "queued"
    workers(account.join_token())
    assert account.wait_for_status(job_id, "complete")["result"]["model"] == DEMO_LLAMA


def test_join_tokens_are_limited_use_and_listed_without_secrets(account, api):
    token = account.join_token(uses=1)
    listing = account.get("/v1/cloud/join-tokens").json()["join_tokens"]
    assert len(listing) == 1 and token not in json.dumps(listing) and listing[0]["uses_left"] == 1
    body = {"join_token": token, "name": "r1", "capabilities": ["model.inspect"]}
    assert api.post("/v1/cloud/runtimes/register", json=body).status_code == 201
    used_up = api.post("/v1/cloud/runtimes/register", json=body)
    assert used_up.status_code == 401 and "join token" in used_up.json()["error"]
    assert account.get("/v1/cloud/join-tokens").json()["join_tokens"] == []
    bad = api.post("/v1/cloud/runtimes/register", json={**body, "join_token": "bjt_not-a-real-token"})
    assert bad.status_code == 401
    shared = account.post("/v1/cloud/join-tokens", json={"shared": True})
    assert shared.status_code == 403 and "operator" in shared.json()["error"]


def test_cancel_queued_and_running_jobs(account, workers, slow_model):
    queued = account.create_job("agent.run", {"agent": "nobody-runs-this"})
    assert account.delete(f"/v1/jobs/{queued}").json() == {"success": True, "ok": True, "status": "cancelled"}

    workers(account.join_token())
    running = account.create_job(payload={"model": slow_model})
    account.wait_for_status(running, "running")
    cancelled = account.delete(f"/v1/jobs/{running}").json()
    assert cancelled["ok"] is True
    job = account.wait_for_status(running, "cancelled", timeout=20)
    assert job["finished_at"]
    events = account.events(running)
    _assert_contiguous(events)
    assert len(_job_steps(events, "cancelled")) == 1
    assert account.delete(f"/v1/jobs/{running}").json() == {"success": True, "ok": True, "status": "cancelled"}


def test_ttl_expiry_by_the_sweeper(account):
    job_id = account.create_job("agent.run", {"agent": "waits"}, ttl_seconds=1)
    job = account.wait_for_status(job_id, "expired", timeout=20)
    assert job["error"] == "expired"
    too_long = account.post("/v1/jobs", json={"type": "agent.run", "payload": {"agent": "a"}, "ttl_seconds": 10**7})
    assert too_long.status_code == 422 and "max_ttl_seconds" in too_long.json()["error"]


def test_worker_killed_mid_job_another_worker_finishes_it(account, workers, slow_model):
    first = workers(account.join_token())
    job_id = account.create_job(payload={"model": slow_model})
    account.wait_for_status(job_id, "running")
    time.sleep(0.5)
    first.signal(signal.SIGKILL)
    first.process.wait()
    second = workers(None, data_dir=workers.clone(first))  # same runtime, a new process
    job = account.wait_for_status(job_id, "complete", timeout=60)
    assert job["result"]["model"] == slow_model
    events = account.events(job_id)
    _assert_contiguous(events)
    assert len(_job_steps(events, "start")) == 2 and len(_job_steps(events, "complete")) == 1
    assert second.runtime_id == first.runtime_id


def test_duplicate_delivery_runs_the_job_once(account, workers, stack, slow_model):
    worker = workers(account.join_token())
    job_id = account.create_job(payload={"model": slow_model})
    account.wait_for_status(job_id, "running")
    runtime = next(r for r in _runtimes(stack) if r.runtime_id == worker.runtime_id)
    job = account.job(job_id)
    duplicate = JobMessage(job_id=job_id, workspace_id=account.workspace_id, type=JobType.model_inspect,
                           payload=job["payload"], expires_at=time.time() + 600, dispatch=1)
    stack.services.aws.client("sqs").send_message(QueueUrl=runtime.jobs_queue_url,
                                   MessageBody=QueueEnvelope(message=duplicate).model_dump_json())
    account.wait_for_status(job_id, "complete", timeout=60)
    time.sleep(2)  # give the duplicate time to be received and dropped
    events = account.events(job_id)
    _assert_contiguous(events)
    assert len(_job_steps(events, "start")) == 1 and len(_job_steps(events, "complete")) == 1


def test_events_reported_while_the_api_is_down_arrive_later_in_order(account, workers, stack, slow_model):
    workers(account.join_token())
    job_id = account.create_job(payload={"model": slow_model})
    account.wait_for_status(job_id, "running")
    stack.stop_api()
    time.sleep(8)  # the job finishes on the worker meanwhile; its events wait in the spool
    stack.start_api()
    job = account.wait_for_status(job_id, "complete", timeout=60)
    assert job["result"]["model"] == slow_model
    events = account.events(job_id)
    _assert_contiguous(events)
    assert events[-1]["status"] == "complete"


def test_a_silent_runtime_goes_offline_and_its_job_moves_to_another(account, workers, slow_model):
    first = workers(account.join_token())
    job_id = account.create_job(payload={"model": slow_model})
    account.wait_for_status(job_id, "running")
    first.signal(signal.SIGSTOP)  # alive but silent: no heartbeats, no events
    second = workers(account.join_token())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        statuses = {r["runtime_id"]: r["status"] for r in account.get("/v1/cloud/runtimes").json()["runtimes"]}
        if statuses[first.runtime_id] == "offline":
            break
        time.sleep(0.2)
    assert statuses[first.runtime_id] == "offline" and statuses[second.runtime_id] == "online"
    job = account.wait_for_status(job_id, "complete", timeout=60)
    assert job["runtime_id"] == second.runtime_id
    first.signal(signal.SIGCONT)  # the first worker wakes up: its late reports are refused
    time.sleep(2)
    events = account.events(job_id)
    _assert_contiguous(events)
    assert len(_job_steps(events, "complete")) == 1
    assert any(e["step"] == "dispatch" and "offline" in e["message"] for e in events)


def test_a_poison_message_is_dead_lettered_and_its_job_ends_in_error(account, workers, stack):
    worker = workers(account.join_token())
    job_id = account.create_job("agent.run", {"agent": "never-dispatched"})  # no runtime runs agent.run
    runtime = next(r for r in _runtimes(stack) if r.runtime_id == worker.runtime_id)
    poison = {"message": {"kind": "job", "job_id": job_id, "workspace_id": account.workspace_id,
                          "type": "model.inspect", "payload": {}, "expires_at": "never", "dispatch": 1}}
    stack.services.aws.client("sqs").send_message(QueueUrl=runtime.jobs_queue_url, MessageBody=json.dumps(poison))
    job = account.wait_for_status(job_id, "error", timeout=90)
    assert "dead-lettered" in job["error"]
    events = account.events(job_id)
    assert events[-1]["status"] == "error" and "dead-lettered" in events[-1]["message"]


def test_another_workspace_sees_nothing_and_its_runtimes_get_none_of_your_jobs(account, api, workers):
    other = new_account(api)
    workers(other.join_token())  # the other workspace has a runtime that could run model.inspect
    job_id = account.create_job(payload={"model": DEMO_LLAMA})
    for response in (other.get(f"/v1/jobs/{job_id}"), other.delete(f"/v1/jobs/{job_id}"),
                     other.get(f"/v1/jobs/{job_id}/events")):
        assert response.status_code == 404 and response.json()["success"] is False
    assert job_id not in json.dumps(other.get("/v1/jobs").json())
    time.sleep(1.5)
    mine = account.job(job_id)
    assert mine["status"] == "queued" and mine["runtime_id"] is None
    assert account.get("/v1/cloud/runtimes").json()["runtimes"] == []


def test_job_listing_is_newest_first_filtered_and_paginated(account):
    ids = [account.create_job("agent.run", {"agent": f"a{n}"}) for n in range(3)]
    account.delete(f"/v1/jobs/{ids[1]}")
    listed = account.get("/v1/jobs").json()["jobs"]
    assert [j["job_id"] for j in listed] == list(reversed(ids))
    cancelled = account.get("/v1/jobs?status=cancelled").json()["jobs"]
    assert [j["job_id"] for j in cancelled] == [ids[1]]
    page = account.get("/v1/jobs?limit=2").json()
    rest = account.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}").json()
    assert [j["job_id"] for j in page["jobs"] + rest["jobs"]] == list(reversed(ids))
    bad_payload = account.post("/v1/jobs", json={"type": "model.inspect", "payload": {"model": ""}})
    assert bad_payload.status_code == 422 and "payload.model" in bad_payload.json()["error"]


def _runtimes(stack) -> list[Runtime]:
    return stack.services.store.runtimes.all()


def test_a_worker_without_aws_credentials_leases_its_jobs_through_the_api(account, workers):
    worker = workers(account.join_token(), "--queue-mode", "lease")
    listed = account.get("/v1/cloud/runtimes").json()["runtimes"]
    assert [(r["runtime_id"], r["queue_mode"]) for r in listed] == [(worker.runtime_id, "lease")]
    job_id = account.create_job(payload={"model": DEMO_LLAMA})
    job = account.wait_for_status(job_id, "complete")
    assert job["runtime_id"] == worker.runtime_id and job["result"]["architecture"] == "LlamaForCausalLM"
    _assert_contiguous(account.events(job_id))
