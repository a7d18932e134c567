"""The audit record of every infra SSH attempt.

Every attempt to run an action, open a forward or change the approval lease is one audit record
with its outcome (app.contract.ssh.jobs.SshOutcome): refusals (`denied`, `approval_required`,
`validation_failed`) are written as they are answered; an accepted run or forward is written when
its job ends (`ok` or `failed`, or what the runtime's refusal maps to), in the transaction that
ends it (`closing_writes`, which the job lifecycle calls), so none is lost and none is doubled.
A record says who (the credential, and the person: `X-User-Id` or the signed-in user), what (host,
action or forward, parameters with secrets redacted), and how it went (exit status, duration,
output sizes and SHA-256 digests; never the output itself).
"""

from dataclasses import replace
from typing import Any

from app.contract.messages import JobStatus, JobType
from app.contract.ssh.jobs import FORWARD_EVENT_STEP, SSH_EVENT_STEP, SshOutcome
from app.domain.infra_ssh import AUDIT_FORWARD, AUDIT_RUN, LABEL_LEASE, LABEL_USER, LABEL_VIA
from app.domain.jobs import Job
from app.domain.ssh_attempts import AttemptOutcome, forward_outcome, run_outcome, shown_parameters
from app.errors import BerthError
from app.services.activity import ActivityLog
from app.services.ssh_caller import SshCaller
from app.store import Store
from app.store.table import Write


class SshAudit:
    def __init__(self, store: Store, activity: ActivityLog):
        self.store = store
        self.activity = activity

    def record(self, caller: SshCaller, action: str, outcome: SshOutcome, *, target: str = "",
               detail: dict[str, Any] | None = None) -> None:
        """An attempt answered now (a refusal, or a change of the lease)."""
        self.activity.audit(caller.workspace_id, action, actor=caller.principal.subject_id, target=target,
                            outcome=outcome.value, detail={**caller.who(), **(detail or {})})

    def refuse(self, caller: SshCaller, action: str, error: BerthError, *, target: str = "",
               detail: dict[str, Any] | None = None) -> BerthError:
        """Record a refused attempt and return the error to answer it with (its kind is the outcome)."""
        outcome = SshOutcome(error.kind) if error.kind in SshOutcome._value2member_map_ else SshOutcome.failed
        if error.kind is None:
            error.kind = outcome.value
        self.record(caller, action, outcome, target=target, detail={**(detail or {}), "error": error.message})
        return error

    # --- accepted attempts, as their jobs end -------------------------------------------------------

    def outcome_of(self, job: Job) -> AttemptOutcome:
        """How an ended (or ending) `ssh.run` / `ssh.forward` job came out (a run that completed
        says so in its result: no event is read for it)."""
        if job.type == JobType.ssh_run and job.status == JobStatus.complete:
            return run_outcome(job, None)
        ssh_event = self.store.jobs.latest_event(job.workspace_id, job.job_id, step=SSH_EVENT_STEP)
        if job.type == JobType.ssh_forward:
            opened = self.store.jobs.latest_event(job.workspace_id, job.job_id, step=FORWARD_EVENT_STEP)
            opened = opened if opened is not None and opened.status.value == "running" else None
            return forward_outcome(job, opened, ssh_event)
        return run_outcome(job, ssh_event)

    def closing_writes(self, job: Job, status: JobStatus, result: Any, error: str | None) -> list[Write]:
        """The audit record of a run or forward, for the transaction that ends its job."""
        ended = replace(job, status=status, result=result, error=error)
        outcome = self.outcome_of(ended)
        labels = job.labels or {}
        payload = job.payload
        host = str((payload.get("host") or {}).get("name", ""))
        if job.type == JobType.ssh_forward:
            action, what = AUDIT_FORWARD, str((payload.get("forward") or {}).get("name", ""))
            detail: dict[str, Any] = {"forward": what}
        else:
            action, what = AUDIT_RUN, str((payload.get("action") or {}).get("name", ""))
            detail = {"action": what, "parameters": shown_parameters(payload)}
        detail = {"via": labels.get(LABEL_VIA, ""), "key_id": job.created_by if labels.get(LABEL_VIA) == "api_key"
                  else "", "user_id": labels.get(LABEL_USER, ""), "host": host, **detail,
                  "job_id": job.job_id, "lease_id": labels.get(LABEL_LEASE, ""), **outcome.detail}
        return [self.activity.audit_write(job.workspace_id, action, actor=job.created_by, target=f"{host}/{what}",
                                          outcome=outcome.outcome.value, detail=detail)]

