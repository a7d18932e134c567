"""How an infra SSH run or forward that was accepted came out, read from its job: its result, the
`ssh` event the runtime sends before failing or stopping (app.contract.ssh.jobs), or the job's own
end. This is what its audit record and its view say."""

from dataclasses import dataclass
from typing import Any

from app.contract.messages import JobStatus
from app.contract.ssh.actions import REDACTED, SshAction, audit_view
from app.contract.ssh.jobs import SshFailureReport, SshOutcome, SshRunResult
from app.domain.jobs import Job, JobEvent


@dataclass(frozen=True)
class AttemptOutcome:
    """How a run or forward that was accepted came out, for its audit record and its view."""

    outcome: SshOutcome
    detail: dict[str, Any]  # exit status, duration, digests, failure: never the output itself


def run_outcome(job: Job, ssh_event: JobEvent | None) -> AttemptOutcome:
    """An `ssh.run` job's outcome: from its result when it completed (the command ran), else from
    the `ssh` event the runtime sent before failing or stopping (app.contract.ssh.jobs), else from
    the job's own error (it never reached a runtime that could say more)."""
    if job.status == JobStatus.complete and isinstance(job.result, dict):
        try:
            result = SshRunResult.model_validate(job.result)
        except ValueError:
            return AttemptOutcome(SshOutcome.failed, {"error": "the runtime's result is not an SSH run result"})
        return AttemptOutcome(result.outcome, result.summary())
    if ssh_event is not None and ssh_event.status.value == "error":
        try:
            report = SshFailureReport.model_validate(ssh_event.data)
        except ValueError:
            return AttemptOutcome(SshOutcome.failed, {"error": ssh_event.message})
        return AttemptOutcome(report.failure.outcome, {"failure": report.failure.value, "error": report.message,
                                                       "duration_ms": report.duration_ms})
    if ssh_event is not None and ssh_event.status.value == "cancelled":
        # The command ran and was stopped (the lease ended, the run was cancelled or expired).
        return AttemptOutcome(SshOutcome.failed, {**ssh_event.data, "error": _ended_early(job)})
    return AttemptOutcome(SshOutcome.failed, {"error": job.error or _ended_early(job)})


def forward_outcome(job: Job, opened: JobEvent | None, ssh_event: JobEvent | None) -> AttemptOutcome:
    """An `ssh.forward` job's outcome: `ok` if the forward opened (however it closed later)."""
    if opened is not None:
        detail: dict[str, Any] = {"target": opened.data.get("target"), "opened_at": opened.at,
                                  "closed": job.status.value}
        if isinstance(job.result, dict):
            detail["open_seconds"] = job.result.get("open_seconds")
        if job.status == JobStatus.error:
            detail["error"] = job.error
        return AttemptOutcome(SshOutcome.ok, detail)
    if ssh_event is not None and ssh_event.status.value == "error":
        try:
            report = SshFailureReport.model_validate(ssh_event.data)
            return AttemptOutcome(report.failure.outcome, {"failure": report.failure.value, "error": report.message})
        except ValueError:
            pass
    return AttemptOutcome(SshOutcome.failed, {"error": job.error or _ended_early(job)})


def _ended_early(job: Job) -> str:
    return {JobStatus.cancelled: "cancelled (the lease ended, or it was closed)",
            JobStatus.expired: "stopped at its deadline (the lease's end, or its own limit)"}.get(
        job.status, job.error or job.status.value)



def shown_parameters(payload: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters as records and views show them (app.contract.ssh.actions.audit_view): the
    values its payload carries, never a secret one (those travel sealed), which shows as
    `[redacted]` (a secret parameter has no default, so every accepted run gave one)."""
    action = SshAction.model_validate(payload["action"])
    secret = {name: REDACTED for name, spec in action.parameters.items() if spec.secret}
    return audit_view(action, {**dict(payload.get("parameters") or {}), **secret})
