"""Who may use a runtime, when it counts as online, and whether it can serve a job: without AWS."""

import pytest

from app.contract.messages import JobStatus, JobType
from app.domain.jobs import Job
from app.domain.runtimes import SHARED_WORKSPACE, Runtime, serves_workspace

INTERVAL = 15.0
NOW = 10_000.0


def _runtime(**changes) -> Runtime:
    fields = {"runtime_id": "rt_1", "workspace_id": "ws_a", "name": "gpu-1", "capabilities": ["agent.run"],
              "max_concurrent_jobs": 2, "last_heartbeat": NOW - 1}
    return Runtime(**{**fields, **changes})


def _job(**changes) -> Job:
    fields = {"job_id": "job_1", "workspace_id": "ws_a", "type": JobType.agent_run, "status": JobStatus.queued,
              "ttl_seconds": 60, "created_at": "", "created_epoch": NOW, "deadline": NOW + 60}
    return Job(**{**fields, **changes})


def test_a_runtime_serves_its_own_workspace_and_a_shared_one_serves_every_workspace():
    assert serves_workspace("ws_a", "ws_a")
    assert not serves_workspace("ws_a", "ws_b")
    assert serves_workspace(SHARED_WORKSPACE, "ws_a") and serves_workspace(SHARED_WORKSPACE, "ws_b")


@pytest.mark.parametrize("silent_for, status, effective", [
    (1, "online", "online"),
    (2 * INTERVAL, "online", "online"),  # two intervals is the limit
    (2 * INTERVAL + 0.1, "online", "offline"),
    (1, "draining", "draining"),
    (2 * INTERVAL + 0.1, "draining", "offline"),
    (1, "offline", "offline"),  # marked offline stays offline until it heartbeats again
])
def test_a_runtime_is_online_only_while_its_heartbeats_keep_coming(silent_for, status, effective):
    assert _runtime(last_heartbeat=NOW - silent_for, status=status).effective_status(NOW, INTERVAL) == effective


def test_a_runtime_can_serve_a_job_it_runs_when_online_with_a_free_slot():
    job = _job()
    assert _runtime().can_serve(job, NOW, INTERVAL)
    assert _runtime(workspace_id=SHARED_WORKSPACE, shared=True).can_serve(job, NOW, INTERVAL)
    assert not _runtime(workspace_id="ws_b").can_serve(job, NOW, INTERVAL)  # another tenant's
    assert not _runtime(capabilities=["model.pull"]).can_serve(job, NOW, INTERVAL)
    assert not _runtime(active_jobs=2).can_serve(job, NOW, INTERVAL)  # full
    assert not _runtime(status="draining").can_serve(job, NOW, INTERVAL)
    assert not _runtime(last_heartbeat=NOW - 3 * INTERVAL).can_serve(job, NOW, INTERVAL)


def test_a_pinned_job_is_served_only_by_its_runtime():
    pinned = _job(pinned_runtime_id="rt_2")
    assert not _runtime().can_serve(pinned, NOW, INTERVAL)
    assert _runtime(runtime_id="rt_2").can_serve(pinned, NOW, INTERVAL)
    assert _runtime().runs(pinned)  # it runs such jobs, only not this one


def test_occupancy_ranks_emptier_runtimes_first():
    assert _runtime(active_jobs=0).occupancy() < _runtime(active_jobs=1).occupancy() < 1
    assert _runtime(max_concurrent_jobs=0).occupancy() == 0  # a runtime with no slots never divides by zero


def test_a_job_with_secrets_is_served_only_by_a_runtime_with_a_runtime_key():
    secret = _job(secrets="e1.sealed.value")
    assert _runtime(sealed_key="e1.sealed.key").can_serve(secret, NOW, INTERVAL)
    assert not _runtime().can_serve(secret, NOW, INTERVAL)  # registered before runtime keys
    assert _runtime().can_serve(_job(), NOW, INTERVAL)


def test_a_runtime_being_deleted_is_offline_whatever_it_reports():
    removed = _runtime(removed_at="2026-01-01T00:00:00Z")
    assert removed.effective_status(NOW, INTERVAL) == "offline"
    assert not removed.can_serve(_job(), NOW, INTERVAL)
