"""The infra SSH approval lease: requested, approved by a person, inspected, revoked.

The two steps (app.domain.infra_ssh): an operator (an admin-tier API key naming its person with
`X-User-Id`, or a signed-in admin) *requests* a lease with a reason and a time box; only a session
(a person who signed in with a password) *approves* it, and a session's own request is approved
as it is made. So an agent holding an admin key can ask, and cannot grant itself anything. While a
lease is active, runs and forwards may start; each is noted under the lease, and ending the lease
(revoked, or its time box passing) stops them: revoking cancels every one still open, and none is
ever given a deadline past the lease's end, so the runtime stops it then on its own.
"""

from dataclasses import replace

from app.clock import Clock
from app.contract.ssh.jobs import SshOutcome
from app.domain.infra_ssh import AUDIT_LEASE, SshLease
from app.errors import ConditionFailed, Conflict, Forbidden, NotFound, Unprocessable
from app.ids import new_id
from app.services.jobs import JobService
from app.services.ssh_audit import SshAudit
from app.services.ssh_caller import SshCaller, denied
from app.settings import Settings
from app.store import Store


class ApprovalRequired(Forbidden):
    default_message = "no approval lease is active"

    def __init__(self, message: str | None = None):
        super().__init__(message, kind=SshOutcome.approval_required.value)


class SshLeaseService:
    def __init__(self, store: Store, settings: Settings, jobs: JobService, audit: SshAudit, clock: Clock):
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self.audit = audit
        self.clock = clock

    def current(self, caller: SshCaller) -> SshLease | None:
        """The workspace's lease as it stands (pending, active, or the last one, over)."""
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        return self.store.ssh_leases.current(caller.workspace_id)

    def active(self, caller: SshCaller) -> SshLease:
        """The active lease, or ApprovalRequired saying what to do."""
        lease = self.store.ssh_leases.current(caller.workspace_id)
        now = self.clock.now()
        if lease is not None and lease.is_active(now):
            return lease
        if lease is not None and lease.state(now) == "pending":
            raise ApprovalRequired(f"lease {lease.lease_id} is waiting for a person to approve it "
                                   "(POST /api/infra/ssh/admin-session/approve, signed in)")
        raise ApprovalRequired("no approval lease is active: request one (POST /api/infra/ssh/admin-session) and "
                               "have a person approve it")

    def request(self, caller: SshCaller, reason: str, ttl_seconds: int) -> SshLease:
        """A signed-in person's request is a lease at once; an API key's waits for a person."""
        detail = {"reason": reason, "ttl_seconds": ttl_seconds}
        if (refused := caller.why_not_operator()) is not None:
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(refused), detail=detail)
        limit = self.settings.ssh_lease_max_seconds
        if ttl_seconds > limit:
            raise self.audit.refuse(caller, AUDIT_LEASE, Unprocessable(
                f"ttl_seconds {ttl_seconds} is over the longest lease, {limit} s (BERTH_SSH_LEASE_MAX_SECONDS)",
                kind=SshOutcome.validation_failed.value), detail=detail)
        now = self.clock.now()
        existing = self.store.ssh_leases.current(caller.workspace_id)
        if existing is not None and existing.is_live(now):
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(
                f"lease {existing.lease_id} is already {existing.state(now)}; end it first "
                "(DELETE /api/infra/ssh/admin-session)", Conflict), detail=detail)
        at = self.clock.iso(now)
        lease = SshLease(lease_id=new_id("lease"), workspace_id=caller.workspace_id, status="pending", reason=reason,
                         ttl_seconds=ttl_seconds, requested_by=caller.principal.subject_id,
                         requested_via=caller.via, requested_for=caller.user_id, requested_at=at,
                         request_expires_epoch=now + self.settings.ssh_lease_request_seconds)
        if caller.via == "session":  # a person asking is a person approving
            lease = replace(lease, status="active", approved_by=caller.user_id, approved_at=at,
                            ends_epoch=now + ttl_seconds)
        try:
            self.store.ssh_leases.replace(lease, existing)
        except ConditionFailed:
            raise Conflict("the lease changed meanwhile; look at it again (GET /api/infra/ssh/admin-session)") from None
        self.audit.record(caller, AUDIT_LEASE, SshOutcome.ok, target=lease.lease_id,
                          detail={"event": "began" if lease.status == "active" else "requested", **detail})
        return lease

    def approve(self, caller: SshCaller, lease_id: str) -> SshLease:
        """A person approves a pending request, naming it (so that what is approved is what they saw);
        its time box starts now."""
        if (refused := caller.why_not_operator()) is not None:
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(refused), target=lease_id)
        if caller.via != "session":
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(
                "a lease is approved by a person signed in (a session), never with an API key"), target=lease_id)
        now = self.clock.now()
        current = self.store.ssh_leases.current(caller.workspace_id)
        if current is None or current.lease_id != lease_id:
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(f"no lease {lease_id} to approve",
                                                                NotFound), target=lease_id)
        try:
            lease = self.store.ssh_leases.approve(caller.workspace_id, lease_id, approved_by=caller.user_id,
                                                  approved_at=self.clock.iso(now),
                                                  ends_epoch=now + current.ttl_seconds, now=now)
        except ConditionFailed:
            state = current.state(now)
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(f"lease {lease_id} is {state}, not waiting for "
                                                                "approval", Conflict), target=lease_id) from None
        self.audit.record(caller, AUDIT_LEASE, SshOutcome.ok, target=lease_id,
                          detail={"event": "approved", "requested_by": lease.requested_by,
                                  "requested_for": lease.requested_for, "ttl_seconds": lease.ttl_seconds})
        return lease

    def end(self, caller: SshCaller) -> tuple[SshLease | None, list[str]]:
        """Revoke the active lease (or decline / withdraw a pending request) and stop every run and
        forward still open under it. Ending what is already over changes nothing. Returns the lease
        and the jobs stopped."""
        if (refused := caller.why_not_operator()) is not None:
            raise self.audit.refuse(caller, AUDIT_LEASE, denied(refused))
        now = self.clock.now()
        lease = self.store.ssh_leases.current(caller.workspace_id)
        if lease is None or not lease.is_live(now):
            return lease, []
        reason = "revoked" if lease.status == "active" else "declined"
        try:
            lease = self.store.ssh_leases.end(caller.workspace_id, lease.lease_id, ended_by=caller.user_id,
                                              ended_at=self.clock.iso(now), reason=reason)
        except ConditionFailed:
            return self.store.ssh_leases.current(caller.workspace_id), []
        stopped = self.stop_jobs(caller, lease)
        self.audit.record(caller, AUDIT_LEASE, SshOutcome.ok, target=lease.lease_id,
                          detail={"event": reason, "stopped": stopped})
        return lease, stopped

    def stop_jobs(self, caller: SshCaller, lease: SshLease) -> list[str]:
        """Cancel every run and forward of `lease` that has not ended; the ones asked to stop."""
        stopped = []
        for job_id in self.store.ssh_leases.jobs_of(lease.workspace_id, lease.lease_id):
            job = self.store.jobs.get(lease.workspace_id, job_id)
            if job is not None and not job.is_final:
                self.jobs.cancel(caller.principal, job_id, wait_seconds=0)
                stopped.append(job_id)
        return stopped

    def note_job(self, lease: SshLease, job_id: str) -> bool:
        """Record a job started under `lease`; False when the lease ended meanwhile."""
        return self.store.ssh_leases.note_job(lease, job_id, self.clock.now())

