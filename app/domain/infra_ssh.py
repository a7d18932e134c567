"""Infra SSH as the API keeps it: the approval lease, and how an attempt's outcome is read from
its job.

The lease is two steps. Anyone who may operate (an admin-tier credential acting for a named
person) may *request* one; only a person signed in with a session may *approve* it (or begin one
outright, which is a request and its approval at once). An API key can therefore never start the
clock on its own: an agent holding an admin key asks, and a person says yes. Approval starts the
lease's time box (`ttl_seconds` from approval); it ends when that passes, or earlier when revoked.
A workspace has at most one lease at a time, pending or active.

How an attempt came out is read from its job in app.domain.ssh_attempts (which needs the SSH
contract's models; this module stays light, for the store).
"""

from dataclasses import dataclass
from typing import Literal

LeaseStatus = Literal["pending", "active", "ended"]
LeaseState = Literal["pending", "active", "ended", "expired", "lapsed"]
Credential = Literal["api_key", "session"]

# What an audit record of infra SSH is filed under (AuditRecord.action).
AUDIT_LEASE, AUDIT_RUN, AUDIT_FORWARD = "infra_ssh.lease", "infra_ssh.run", "infra_ssh.forward"
# The labels of a run's or forward's job that say who started it, and under which lease.
LABEL_USER, LABEL_VIA, LABEL_LEASE = "ssh.user_id", "ssh.via", "ssh.lease_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class SshLease:
    lease_id: str
    workspace_id: str
    status: LeaseStatus  # as stored; `state(now)` is what it is now
    reason: str
    ttl_seconds: int  # how long it is active once approved
    requested_by: str  # the credential that asked: an API key id, or the signed-in user's id
    requested_via: Credential
    requested_for: str  # the person it is for: X-User-Id, or the signed-in user
    requested_at: str
    request_expires_epoch: float  # a pending request lapses then
    approved_by: str | None = None  # the user whose session approved it
    approved_at: str | None = None
    ends_epoch: float | None = None  # active until then
    ended_at: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    def state(self, now: float) -> LeaseState:
        """`pending` (waiting for a person), `active`, or over: `ended` (revoked, withdrawn),
        `expired` (its time box passed) or `lapsed` (nobody approved it in time)."""
        if self.status == "pending":
            return "pending" if now < self.request_expires_epoch else "lapsed"
        if self.status == "active":
            return "active" if self.ends_epoch is not None and now < self.ends_epoch else "expired"
        return "ended"

    def is_active(self, now: float) -> bool:
        return self.state(now) == "active"

    def is_live(self, now: float) -> bool:
        """Pending or active: a workspace holds one such lease at a time."""
        return self.state(now) in ("pending", "active")

    def seconds_left(self, now: float) -> float:
        return max((self.ends_epoch or now) - now, 0.0) if self.is_active(now) else 0.0
