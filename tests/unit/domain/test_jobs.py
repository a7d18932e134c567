"""The job state machine's rules, without AWS."""

import pytest

from app.contract.messages import EventStatus, JobStatus, JobType
from app.domain.jobs import OPEN_JOB_STATUSES, Job, JobEvent, can_transition, ending_status, in_turns

FINAL = [JobStatus.complete, JobStatus.error, JobStatus.expired, JobStatus.cancelled]


def _job(**changes) -> Job:
    fields = {"job_id": "job_1", "workspace_id": "ws_a", "type": JobType.agent_run, "status": JobStatus.queued,
              "ttl_seconds": 60, "created_at": "2026-01-01T00:00:00.000Z", "created_epoch": 1000.0, "deadline": 1060.0}
    return Job(**{**fields, **changes})


def test_open_and_final_statuses_split_every_status():
    assert OPEN_JOB_STATUSES == {JobStatus.queued, JobStatus.running}
    assert set(FINAL).isdisjoint(OPEN_JOB_STATUSES) and set(FINAL) | OPEN_JOB_STATUSES == set(JobStatus)


@pytest.mark.parametrize("final", FINAL)
def test_nothing_leaves_a_final_status(final):
    assert not any(can_transition(final, target) for target in JobStatus)
    assert _job(status=final).is_final


@pytest.mark.parametrize("current, target", [
    (JobStatus.queued, JobStatus.running),  # claimed
    (JobStatus.running, JobStatus.running),  # claimed again after a lapsed lease
    (JobStatus.running, JobStatus.queued),  # taken back from a silent runtime
    (JobStatus.queued, JobStatus.queued),  # taken back before its worker claimed it
    *[(JobStatus.queued, final) for final in FINAL],
    *[(JobStatus.running, final) for final in FINAL],
])
def test_an_open_job_may_be_claimed_taken_back_or_finished(current, target):
    assert can_transition(current, target) and not _job(status=current).is_final


@pytest.mark.parametrize("status, ends_with", [
    (EventStatus.complete, JobStatus.complete), (EventStatus.error, JobStatus.error),
    (EventStatus.cancelled, JobStatus.cancelled), (EventStatus.expired, JobStatus.expired),
    (EventStatus.running, None), (EventStatus.start, None), (EventStatus.ok, None), (EventStatus.queued, None),
])
def test_only_a_job_step_event_with_a_final_status_ends_the_job(status, ends_with):
    assert ending_status("job", status) == ends_with
    assert JobEvent(seq=3, step="job", status=status).ends_job == (ends_with is not None)
    assert ending_status("pull", status) is None  # any other step is progress, whatever its status
    assert not JobEvent(seq=3, step="pull", status=status).ends_job


def test_assigning_counts_the_dispatch_and_names_the_runtime():
    never = _job()
    assert never.dispatch == 0 and never.runtime_id is None  # one default: never dispatched
    first = never.assigned_to("rt_1", "shared", now=1001.0)
    assert (first.dispatch, first.runtime_id, first.runtime_workspace, first.dispatched_at) == (1, "rt_1", "shared",
                                                                                              1001.0)
    assert first.assigned_to("rt_2", "ws_a", now=1002.0).dispatch == 2
    assert never.dispatch == 0  # records are values: assigning makes a new one


def test_only_an_unclaimed_queued_job_is_cancelled_without_its_worker():
    assert _job().cancels_without_its_worker
    assert not _job(claim_id="clm_1").cancels_without_its_worker  # claimed, re-queued: the worker may still run it
    assert not _job(status=JobStatus.running, claim_id="clm_1").cancels_without_its_worker


def test_a_lease_is_live_only_while_claimed_and_unexpired():
    assert not _job(lease_until=2000.0).lease_is_live(now=1500.0)  # no claim
    assert _job(claim_id="clm_1", lease_until=2000.0).lease_is_live(now=1500.0)
    assert not _job(claim_id="clm_1", lease_until=2000.0).lease_is_live(now=2000.0)


def test_sandbox_jobs_are_the_mcp_server_types():
    assert _job(type=JobType.mcp_test).is_sandbox and _job(type=JobType.mcp_run).is_sandbox
    assert not _job(type=JobType.tool_run).is_sandbox and not _job(type=JobType.model_pull).is_sandbox


def test_waiting_jobs_take_turns_across_workspaces():
    def job(workspace_id: str, n: int) -> Job:
        return Job(job_id=f"job_{workspace_id}_{n}", workspace_id=workspace_id, type=JobType.agent_run,
                   status=JobStatus.queued, ttl_seconds=60, created_at="", created_epoch=n, deadline=60.0)

    backlog = [job("ws_a", n) for n in range(4)] + [job("ws_b", 0), job("ws_c", 0), job("ws_c", 1)]
    assert [j.job_id for j in in_turns(backlog)] == ["job_ws_a_0", "job_ws_b_0", "job_ws_c_0", "job_ws_a_1",
                                                     "job_ws_c_1", "job_ws_a_2", "job_ws_a_3"]
