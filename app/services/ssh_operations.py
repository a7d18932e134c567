"""Running infra SSH actions: the inventory as callers see it, and runs (`ssh.run` jobs).

The API never holds an SSH connection: a run is a job on a runtime that can reach the host
(capability `ssh.run`, labels including the host's `runtime_labels`). Before anything is sent,
checks run in this order, each refusal answered with its kind and audited:

1. the caller is an operator: an admin-tier credential acting for a named person (`denied`);
2. an approval lease is active (`approval_required`);
3. the host and action exist and the action may run on that host (`denied`);
4. the parameters render (`validation_failed`).

Then the host's client key is resolved and the job created: its payload carries the host (with
its pinned host key), the action and the values of its parameters that are not secret; the key
and the secret values are the job's secrets, sealed for the runtime that takes it. Its deadline
leaves room for connecting and the action's own timeout, and never passes the lease's end. The
job is noted under the lease, so revoking the lease stops it. How it came out is audited when it
ends (app.services.ssh_audit).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from app.clock import Clock
from app.contract.messages import JobType
from app.contract.ssh.jobs import SshOutcome
from app.domain.infra_ssh import AUDIT_RUN, LABEL_LEASE, LABEL_USER, LABEL_VIA, SshLease
from app.domain.jobs import Job
from app.domain.ssh_attempts import AttemptOutcome
from app.errors import BerthError, NotFound, Unprocessable
from app.services.event_feed import EventFeed
from app.services.jobs import JobService
from app.services.ssh_audit import SshAudit
from app.services.ssh_caller import SshCaller, denied
from app.services.ssh_inventory import SshInventorySource
from app.services.ssh_keys import SshClientKeys
from app.services.ssh_leases import ApprovalRequired, SshLeaseService
from app.settings import Settings
from app.store import Store
from app.store.table import Page

if TYPE_CHECKING:
    from app.contract.ssh.actions import SshAction
    from app.contract.ssh.hosts import SshHost
    from app.contract.ssh.inventory import SshInventory

# Beyond connecting and the action's own timeout: the runtime's claim, the result's delivery.
DEADLINE_MARGIN_SECONDS = 15


@dataclass(frozen=True)
class Attempt:
    """An attempt being checked: who, what (for its audit record), and what it is aimed at."""

    caller: SshCaller
    audit_action: str
    target: str  # "<host>/<action or forward>"
    detail: dict[str, Any]

    def refuse(self, audit: SshAudit, error: BerthError) -> BerthError:
        return audit.refuse(self.caller, self.audit_action, error, target=self.target, detail=self.detail)


class SshOperations:
    def __init__(self, store: Store, settings: Settings, inventory: SshInventorySource, keys: SshClientKeys,
                 leases: SshLeaseService, jobs: JobService, audit: SshAudit, feed: EventFeed, clock: Clock):
        self.store = store
        self.settings = settings
        self.inventory_source = inventory
        self.keys = keys
        self.leases = leases
        self.jobs = jobs
        self.audit = audit
        self.feed = feed
        self.clock = clock

    # --- the inventory, as an admin sees it -------------------------------------------------------

    def inventory(self, caller: SshCaller) -> "SshInventory":
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        return self.inventory_source.inventory()

    def host(self, caller: SshCaller, name: str) -> "SshHost":
        host = self.inventory(caller).host(name)
        if host is None:
            raise NotFound(f"no host {name} in the SSH inventory", kind=SshOutcome.denied.value)
        return host

    def action(self, caller: SshCaller, name: str) -> "SshAction":
        action = self.inventory(caller).action(name)
        if action is None:
            raise NotFound(f"no action {name} in the SSH inventory", kind=SshOutcome.denied.value)
        return action

    # --- starting an attempt: the checks every run and forward passes -----------------------------

    def check(self, attempt: Attempt) -> tuple["SshInventory", SshLease]:
        """Steps 1 and 2 (and the inventory being usable), refusals audited."""
        if (refused := attempt.caller.why_not_operator()) is not None:
            raise attempt.refuse(self.audit, denied(refused))
        try:
            lease = self.leases.active(attempt.caller)
            inventory = self.inventory_source.inventory()
        except BerthError as error:
            raise attempt.refuse(self.audit, error) from None
        return inventory, lease

    def aimed_at(self, attempt: Attempt, inventory: "SshInventory", host_name: str, entry: Any,
                 what: str) -> "SshHost":
        """Step 3: the host, if it exists and `entry` (an action or forward, None when unknown) may
        be used on it."""
        host = inventory.host(host_name)
        if entry is None or host is None:
            missing = f"no {what}" if entry is None else f"no host {host_name}"
            raise attempt.refuse(self.audit, denied(f"{missing} in the SSH inventory", NotFound))
        if not entry.may_run_on(host):
            raise attempt.refuse(self.audit, denied(f"{what} may not be used on host {host_name} (its hosts: "
                                                    f"{', '.join(entry.hosts) or '-'}; labels: "
                                                    f"{', '.join(entry.labels) or '-'})"))
        return host

    def launch(self, attempt: Attempt, lease: SshLease, job_type: JobType, host: "SshHost",
               payload: dict[str, Any], secrets: dict[str, Any], seconds_needed: float) -> Job:
        """Resolve the client key, create the job (secrets sealed), note it under the lease. The
        job's deadline is `seconds_needed` from now, but never past the lease's end."""
        try:
            key = self.keys.resolve(host.client_key)
        except BerthError as error:
            raise attempt.refuse(self.audit, error) from None
        left = lease.seconds_left(self.clock.now())
        ttl = max(1, min(math.ceil(seconds_needed), math.floor(left), self.settings.max_ttl_seconds))
        caller = attempt.caller
        labels = {LABEL_USER: caller.user_id, LABEL_VIA: caller.via, LABEL_LEASE: lease.lease_id}
        try:
            job = self.jobs.create(caller.principal, job_type,
                                   {**payload, "client_private_key": key, "secret_parameters": secrets}, ttl,
                                   labels=labels, runtime_labels=host.runtime_labels)
        except BerthError as error:
            raise attempt.refuse(self.audit, error) from None
        if not self.leases.note_job(lease, job.job_id):
            # The lease ended between the check and now: this job must not run.
            self.jobs.cancel(caller.principal, job.job_id, wait_seconds=0)
            raise ApprovalRequired(f"lease {lease.lease_id} ended as the job was created; it was cancelled")
        return job

    # --- runs ---------------------------------------------------------------------------------------

    def start_run(self, caller: SshCaller, action_name: str, host_name: str, parameters: dict[str, Any]) -> Job:
        """Check, audit refusals, and start an `ssh.run` job (see the module's docstring)."""
        from app.contract.ssh.actions import ParametersInvalid, audit_view, render

        attempt = Attempt(caller, AUDIT_RUN, f"{host_name}/{action_name}",
                          {"host": host_name, "action": action_name, "parameters": audit_view(None, parameters)})
        inventory, lease = self.check(attempt)
        action = inventory.action(action_name)
        attempt = Attempt(caller, AUDIT_RUN, attempt.target, {**attempt.detail, "lease_id": lease.lease_id,
                                                               "parameters": audit_view(action, parameters)})
        host = self.aimed_at(attempt, inventory, host_name, action, f"action {action_name}")
        assert action is not None
        try:
            render(action, parameters)
        except ParametersInvalid as invalid:
            raise attempt.refuse(self.audit, Unprocessable(f"parameters refused: {invalid}",
                                                           kind=SshOutcome.validation_failed.value)) from None
        secret = {name for name, spec in action.parameters.items() if spec.secret}
        payload = {"host": host.model_dump(mode="json"), "action": action.model_dump(mode="json"),
                   "parameters": {k: v for k, v in parameters.items() if k not in secret},
                   "connect_timeout_seconds": self.settings.ssh_connect_timeout_seconds}
        needed = self.settings.ssh_connect_timeout_seconds + action.timeout_seconds + DEADLINE_MARGIN_SECONDS
        return self.launch(attempt, lease, JobType.ssh_run, host, payload,
                           {k: v for k, v in parameters.items() if k in secret}, needed)

    def run(self, caller: SshCaller, run_id: str) -> Job:
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        job = self.store.jobs.get(caller.workspace_id, run_id)
        if job is None or job.type != JobType.ssh_run:
            raise NotFound(f"no SSH run {run_id}")
        return job

    def runs(self, caller: SshCaller, *, limit: int, cursor: str | None) -> Page[Job]:
        """Newest first."""
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        return self.store.jobs.page(caller.workspace_id, limit=limit, cursor=cursor, job_type=JobType.ssh_run)

    def outcome(self, job: Job) -> AttemptOutcome | None:
        """How an ended run or forward came out (None while it has not ended)."""
        return self.audit.outcome_of(job) if job.is_final else None

    async def wait_for_end(self, job: Job, wait_seconds: float) -> Job:
        """The job once it has ended, or as it is after `wait_seconds`."""
        return await self.wait_until(job, wait_seconds, lambda current: current.is_final)

    async def wait_until(self, job: Job, wait_seconds: float, done: Callable[[Job], bool]) -> Job:
        """A bounded wait for `done(job)` (called in a worker thread: it may read the table), woken
        by the job's events in this process and checked again every `BERTH_SSE_POLL_SECONDS`."""
        feed = self.feed.subscribe(job.workspace_id, job.job_id)
        try:
            deadline = self.clock.now() + wait_seconds
            while not job.is_final and not await to_thread.run_sync(done, job):
                remaining = deadline - self.clock.now()
                if remaining <= 0:
                    break
                await feed.wait(min(self.settings.sse_poll_seconds, remaining))
                job = await to_thread.run_sync(self._reread, job)
            return job
        finally:
            feed.close()

    def _reread(self, job: Job) -> Job:
        return self.store.jobs.get(job.workspace_id, job.job_id) or job


def allowed_on(inventory: "SshInventory", host: "SshHost") -> tuple[list[str], list[str]]:
    """The names of the actions and forwards that may be used on `host`."""
    return ([a.name for a in inventory.actions if a.may_run_on(host)],
            [f.name for f in inventory.forwards if f.may_run_on(host)])
