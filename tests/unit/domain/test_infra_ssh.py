"""Infra SSH's rules without AWS: the lease's states, how a run's or forward's outcome is read from
its job, what views show of parameters, and where an SSH job may be placed."""

from dataclasses import replace

from app.contract.messages import EventStatus, JobStatus, JobType
from app.contract.ssh.jobs import SshOutcome
from app.domain.infra_ssh import SshLease
from app.domain.jobs import Job, JobEvent
from app.domain.runtimes import Runtime
from app.domain.ssh_attempts import forward_outcome, run_outcome, shown_parameters

NOW = 10_000.0
ACTION = {"name": "rotate", "hosts": ["gpu-1"], "command": ["rotate", "{user}", "{token}"],
          "parameters": {"user": {"type": "string", "pattern": "[a-z]+"},
                         "token": {"type": "string", "pattern": ".+", "secret": True}}}


def lease(**changes) -> SshLease:
    fields = {"lease_id": "lease_1", "workspace_id": "ws_a", "status": "pending", "reason": "r", "ttl_seconds": 600,
              "requested_by": "key_1", "requested_via": "api_key", "requested_for": "ada", "requested_at": "",
              "request_expires_epoch": NOW + 900}
    return SshLease(**{**fields, **changes})


def job(job_type: JobType = JobType.ssh_run, **changes) -> Job:
    fields = {"job_id": "job_1", "workspace_id": "ws_a", "type": job_type, "status": JobStatus.complete,
              "ttl_seconds": 60, "created_at": "", "created_epoch": NOW, "deadline": NOW + 60,
              "payload": {"host": {"name": "gpu-1"}, "action": ACTION, "parameters": {"user": "ops"}}}
    return Job(**{**fields, **changes})


def result(exit_status: int | None = 0, ended: str = "exited") -> dict:
    return {"host": "gpu-1", "action": "rotate", "command": "exec 'rotate' 'ops' [redacted]",
            "parameters": {"user": "ops", "token": "[redacted]"}, "ended": ended, "exit_status": exit_status,
            "stdout": "done", "stderr": "", "stdout_bytes": 4, "stderr_bytes": 0, "stdout_truncated": False,
            "stderr_truncated": False, "stdout_sha256": "a" * 64, "stderr_sha256": "b" * 64, "connect_ms": 3.0,
            "duration_ms": 9.0}


def event(step: str, status: EventStatus, data: dict, message: str = "") -> JobEvent:
    return JobEvent(seq=3, step=step, status=status, data=data, message=message, at="2026-01-01T00:00:00.000Z")


def test_a_lease_is_pending_until_approved_active_for_its_time_box_then_over():
    pending = lease()
    assert pending.state(NOW) == "pending" and pending.is_live(NOW) and not pending.is_active(NOW)
    assert pending.state(NOW + 901) == "lapsed" and not pending.is_live(NOW + 901)
    active = lease(status="active", ends_epoch=NOW + 600)
    assert active.is_active(NOW) and active.seconds_left(NOW) == 600
    assert active.state(NOW + 600) == "expired" and active.seconds_left(NOW + 600) == 0
    assert lease(status="ended", ends_epoch=NOW + 600).state(NOW) == "ended"


def test_a_completed_run_is_ok_only_when_its_command_exited_zero():
    assert run_outcome(job(result=result()), None).outcome is SshOutcome.ok
    failed = run_outcome(job(result=result(exit_status=3)), None)
    assert failed.outcome is SshOutcome.failed and failed.detail["exit_status"] == 3
    assert "stdout" not in failed.detail and failed.detail["stdout_sha256"] == "a" * 64
    assert run_outcome(job(result=result(None, ended="timeout")), None).outcome is SshOutcome.failed


def test_a_run_the_runtime_refused_keeps_the_runtimes_kind():
    for failure, outcome in (("host_key_mismatch", SshOutcome.failed), ("not_allowed", SshOutcome.denied),
                             ("invalid_request", SshOutcome.validation_failed)):
        report = {"failure": failure, "message": "why", "host": "gpu-1", "duration_ms": 2.0}
        read = run_outcome(job(status=JobStatus.error, error="why"), event("ssh", EventStatus.error, report))
        assert read.outcome is outcome and read.detail["failure"] == failure


def test_a_stopped_run_is_failed_with_what_it_did_before_it_stopped():
    summary = {k: v for k, v in result(None, ended="cancelled").items() if k not in ("stdout", "stderr")}
    stopped = run_outcome(job(status=JobStatus.cancelled), event("ssh", EventStatus.cancelled, summary))
    assert stopped.outcome is SshOutcome.failed and stopped.detail["ended"] == "cancelled"
    never_ran = run_outcome(job(status=JobStatus.expired, error="expired"), None)
    assert never_ran.outcome is SshOutcome.failed and never_ran.detail["error"] == "expired"


def test_a_forward_that_opened_is_ok_however_it_closed():
    opened = event("forward", EventStatus.running, {"target": "127.0.0.1:8265"})
    closed = forward_outcome(job(JobType.ssh_forward, status=JobStatus.cancelled, result=None), opened, None)
    assert closed.outcome is SshOutcome.ok and closed.detail["closed"] == "cancelled"
    report = {"failure": "unreachable", "message": "no route", "host": "gpu-1", "duration_ms": 1.0}
    never = forward_outcome(job(JobType.ssh_forward, status=JobStatus.error), None,
                            event("ssh", EventStatus.error, report))
    assert never.outcome is SshOutcome.failed and never.detail["failure"] == "unreachable"


def test_views_show_a_secret_parameter_as_redacted_and_never_its_value():
    assert shown_parameters(job().payload) == {"user": "ops", "token": "[redacted]"}


def test_an_ssh_job_goes_only_to_a_runtime_with_its_hosts_runtime_labels():
    placed = job(status=JobStatus.queued, runtime_labels={"zone": "lab"})
    runtime = Runtime(runtime_id="rt_1", workspace_id="ws_a", name="r", capabilities=["ssh.run"],
                      max_concurrent_jobs=2, last_heartbeat=NOW)
    assert not runtime.runs(placed)
    assert not replace(runtime, labels={"zone": "dc"}).runs(placed)
    assert replace(runtime, labels={"zone": "lab", "gpu": "a100"}).runs(placed)
    assert runtime.runs(replace(placed, runtime_labels=None))
