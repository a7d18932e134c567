"""Port forwards to an inventory host (`ssh.forward` jobs), and HTTP through them.

A forward passes the same checks as a run (app.services.ssh_operations) and is then held by a
runtime that can reach the host, until it is closed, its TTL passes (at most the forward's
`max_ttl_seconds`) or the lease ends. The runtime listens on a private Unix socket, not a port, so
the forwarded service (a dashboard, say) is reachable only through berth's proxy: each request is
authenticated here (an admin, while the lease is active), then sent to the runtime as an
`ssh.proxy` control message with a token signed for that forward, that method and that one
request, which the runtime checks before anything reaches the forward.
"""

import base64
from collections.abc import Callable

from app.clock import Clock
from app.contract.messages import JobType, ProxyRequest, ProxyResponse
from app.contract.signing import sign_proxy_token
from app.contract.ssh.jobs import FORWARD_EVENT_STEP, ForwardTokenClaims, SshOutcome
from app.domain.infra_ssh import AUDIT_FORWARD
from app.domain.jobs import Job, JobEvent
from app.domain.runtimes import Runtime
from app.errors import Conflict, NotFound, Unprocessable
from app.services.control import ControlChannel
from app.services.ssh_caller import SshCaller, denied
from app.services.ssh_operations import Attempt, SshOperations
from app.settings import Settings
from app.store import Store
from app.store.table import Page

FORWARD_TOKEN_SECONDS = 60


class SshForwards:
    def __init__(self, store: Store, settings: Settings, operations: SshOperations, control: ControlChannel,
                 signing_key: Callable[[Runtime], str], clock: Clock):
        self.store = store
        self.settings = settings
        self.operations = operations
        self.control = control
        self.signing_key = signing_key
        self.clock = clock

    def open(self, caller: SshCaller, forward_name: str, host_name: str, ttl_seconds: int | None) -> Job:
        """Check, audit refusals, and start an `ssh.forward` job."""
        attempt = Attempt(caller, AUDIT_FORWARD, f"{host_name}/{forward_name}",
                          {"host": host_name, "forward": forward_name, "ttl_seconds": ttl_seconds})
        operations = self.operations
        inventory, lease = operations.check(attempt)
        allowed = inventory.forward(forward_name)
        attempt = Attempt(caller, AUDIT_FORWARD, attempt.target, {**attempt.detail, "lease_id": lease.lease_id})
        host = operations.aimed_at(attempt, inventory, host_name, allowed, f"forward {forward_name}")
        assert allowed is not None
        if ttl_seconds is not None and ttl_seconds > allowed.max_ttl_seconds:
            raise attempt.refuse(operations.audit, Unprocessable(
                f"ttl_seconds {ttl_seconds} is over forward {forward_name}'s max_ttl_seconds {allowed.max_ttl_seconds}",
                kind=SshOutcome.validation_failed.value))
        payload = {"host": host.model_dump(mode="json"), "forward": allowed.model_dump(mode="json"),
                   "connect_timeout_seconds": self.settings.ssh_connect_timeout_seconds}
        return operations.launch(attempt, lease, JobType.ssh_forward, host, payload, {},
                                 ttl_seconds or allowed.max_ttl_seconds)

    def get(self, caller: SshCaller, forward_id: str) -> Job:
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        job = self.store.jobs.get(caller.workspace_id, forward_id)
        if job is None or job.type != JobType.ssh_forward:
            raise NotFound(f"no SSH forward {forward_id}")
        return job

    def page(self, caller: SshCaller, *, limit: int, cursor: str | None) -> Page[Job]:
        """Newest first."""
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        return self.store.jobs.page(caller.workspace_id, limit=limit, cursor=cursor, job_type=JobType.ssh_forward)

    def opened(self, job: Job) -> JobEvent | None:
        """The runtime's report that the forward is open, if it made one."""
        event = self.store.jobs.latest_event(job.workspace_id, job.job_id, step=FORWARD_EVENT_STEP)
        return event if event is not None and event.status.value == "running" else None

    def close(self, caller: SshCaller, forward_id: str) -> Job:
        """Close a forward (its job is cancelled; its runtime closes the connection). Closing one that
        is closed changes nothing."""
        if (refused := caller.why_not_operator()) is not None:
            raise denied(refused)
        job = self.get(caller, forward_id)
        if not job.is_final:
            self.operations.jobs.cancel(caller.principal, forward_id)
        return self.get(caller, forward_id)

    def proxy(self, caller: SshCaller, forward_id: str, *, method: str, path: str, query: str,
              headers: dict[str, str], body: bytes) -> ProxyResponse:
        """One HTTP request through an open forward, answered as the forwarded service answered it."""
        if (refused := caller.why_not_admin()) is not None:
            raise denied(refused)
        self.operations.leases.active(caller)
        job = self.store.jobs.running(caller.workspace_id, forward_id)
        if job is None or job.type != JobType.ssh_forward:
            raise NotFound(f"no SSH forward {forward_id}")
        if job.is_final or not job.runtime_id or not job.runtime_workspace:
            raise Conflict(f"forward {forward_id} is {job.status.value}, not open")
        runtime = self.store.runtimes.get(job.runtime_workspace, job.runtime_id)
        if runtime is None:
            raise Conflict(f"forward {forward_id}'s runtime is gone")
        claims = ForwardTokenClaims.issue(forward_id, job.workspace_id, runtime.runtime_id, method, self.clock.now(),
                                          FORWARD_TOKEN_SECONDS)
        request = ProxyRequest(token=sign_proxy_token(self.signing_key(runtime), claims.model_dump()), method=method,
                               path=path, query=query, headers=headers, body_b64=base64.b64encode(body).decode())
        result = self.control.call(job, "ssh.proxy", request.model_dump(),
                                   timeout=self.settings.tool_call_timeout_seconds)
        return ProxyResponse(**result)
