"""Model jobs through the real local stack, as far as today's API takes them: a worker process
that can start the (fake) vLLM advertises it, and a `model.pull` sent through `/v1/jobs` lands
verified in the runtime's cache, its progress in the job's events. Attaching profiles (and with it
`model.attach`, `model.proxy`, `/openai/v1`) is the API's half, still to come."""

import pytest

from app.contract.models import ModelProgress
from tests.support.hub import DEMO_GATED
from tests.support.model_jobs import fake_vllm_environment
from tests.support.model_repos import DEMO_SHARDED, ENGINE_FILES

pytestmark = pytest.mark.e2e


def test_a_model_pull_through_the_stack_lands_verified_in_the_runtimes_cache(account, workers, hub, monkeypatch):
    for name, value in fake_vllm_environment().items():
        monkeypatch.setenv(name, value)  # the worker process inherits it
    worker = workers(account.join_token())
    capabilities = account.get("/v1/capabilities").json()
    assert {"model.pull", "model.preload", "model.attach"} <= set(capabilities["capabilities"])
    assert capabilities["runtimes"]["vllm"] is True

    job_id = account.create_job("model.pull", payload={"model": DEMO_SHARDED})
    job = account.wait_for_status(job_id, "complete")

    progress = [ModelProgress.of_event(e["data"]) for e in account.events(job_id)]
    statuses = [p.installation_status.value for p in progress if p is not None]
    assert list(dict.fromkeys(statuses)) == ["checking", "downloading", "verifying", "attached"]
    commit = hub.head_sha(DEMO_SHARDED)
    assert job["result"]["commit"] == commit and job["result"]["cached"] is False
    snapshot = worker.data_dir / "models" / "hub" / "models--berth-demo--sharded-llama" / "snapshots" / commit
    assert job["result"]["local_path"] == str(snapshot)
    assert {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()} == ENGINE_FILES


def test_a_gated_pull_without_a_credential_ends_in_error_saying_so(account, workers):
    workers(account.join_token())

    job_id = account.create_job("model.pull", payload={"model": DEMO_GATED})
    job = account.wait_for_status(job_id, "error")

    assert "is gated" in job["error"]
    failed = [e for e in account.events(job_id) if e["step"] == "failed"]
    assert failed and failed[0]["data"]["failure"] == "gated"
