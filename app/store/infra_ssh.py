"""The workspace's infra SSH approval lease, and the jobs started under it.

One item per workspace holds its current lease (replaced by the next, conditionally on the one it
replaces, so two requests cannot both win). Each run or forward started under a lease is noted in
an item of its own (`SSHLEASE#<lease>#JOB#<job>`), written in one transaction with a condition
that the lease is still active, so that whoever ends the lease finds every job to stop.
"""

from app.domain.infra_ssh import SshLease
from app.errors import ConditionFailed
from app.store import keys
from app.store.records import attributes, record
from app.store.table import Condition, Table, Write

_KEPT_AFTER_LEASE_SECONDS = 86400  # a job's note outlives its lease by this much, then goes


class SshLeases:
    def __init__(self, table: Table):
        self.table = table

    def current(self, workspace_id: str) -> SshLease | None:
        item = self.table.get(*keys.ssh_lease(workspace_id))
        return record(SshLease, item, workspace_id=workspace_id) if item else None

    def replace(self, lease: SshLease, replacing: SshLease | None) -> None:
        """Store `lease` as the workspace's lease, only if `replacing` is still the one stored
        (None: only if there is none); ConditionFailed otherwise."""
        pk, sk = keys.ssh_lease(lease.workspace_id)
        item = {"pk": pk, "sk": sk, **attributes(lease, skip=("workspace_id",))}
        if replacing is None:
            self.table.put(item, must_not_exist=True)
        else:
            self.table.put(item, condition=Condition(equals={"lease_id": replacing.lease_id}))

    def approve(self, workspace_id: str, lease_id: str, *, approved_by: str, approved_at: str, ends_epoch: float,
                now: float) -> SshLease:
        """A pending, unlapsed request made active; ConditionFailed if it is not that any more."""
        item = self.table.update(*keys.ssh_lease(workspace_id),
                                 set={"status": "active", "approved_by": approved_by, "approved_at": approved_at,
                                      "ends_epoch": ends_epoch},
                                 condition=Condition(equals={"lease_id": lease_id, "status": "pending"},
                                                     above={"request_expires_epoch": now}))
        return record(SshLease, item, workspace_id=workspace_id)

    def end(self, workspace_id: str, lease_id: str, *, ended_by: str, ended_at: str, reason: str) -> SshLease:
        """A pending or active lease ended (revoked, withdrawn, denied); ConditionFailed if it had
        already ended or another lease took its place."""
        item = self.table.update(*keys.ssh_lease(workspace_id),
                                 set={"status": "ended", "ended_by": ended_by, "ended_at": ended_at,
                                      "end_reason": reason},
                                 condition=Condition(equals={"lease_id": lease_id},
                                                     in_={"status": ["pending", "active"]}))
        return record(SshLease, item, workspace_id=workspace_id)

    def note_job(self, lease: SshLease, job_id: str, now: float) -> bool:
        """Record that `job_id` runs under `lease`, if the lease is still active now; False if not."""
        pk, sk = keys.ssh_lease(lease.workspace_id)
        note_pk, note_sk = keys.ssh_lease_job(lease.workspace_id, lease.lease_id, job_id)
        still_active = Write.update(pk, sk, set={"last_job_id": job_id},
                                    condition=Condition(equals={"lease_id": lease.lease_id, "status": "active"},
                                                        above={"ends_epoch": now}))
        expires = int((lease.ends_epoch or now) + _KEPT_AFTER_LEASE_SECONDS)
        note = Write.put({"pk": note_pk, "sk": note_sk, "job_id": job_id, "expires_epoch": expires})
        try:
            self.table.transact([still_active, note])
        except ConditionFailed:
            return False
        return True

    def jobs_of(self, workspace_id: str, lease_id: str) -> list[str]:
        """The jobs started under a lease, oldest first."""
        items = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.ssh_lease_jobs(lease_id)).items
        return [item["job_id"] for item in items]
