"""Requests to a running job, answered by the worker that runs it (`request`, `call`), and
notices it need not answer (`notify`: a cancel).

Directly when the runtime serves a control endpoint (its `control_url`): the API POSTs the signed
control message there and the response is the reply. Otherwise, or when nothing could be
delivered there (refused, unreachable), through the runtime's control queue: the API sends the
message and waits, bounded, for the reply the worker posts back; the reply is an item with a
short TTL, so an answer that arrives after the wait is simply unread.

A direct request that was sent but not answered in time is never resent: it may have run.
"""

import socket
import threading
from typing import TYPE_CHECKING, Any

from app.clock import Clock
from app.contract.messages import ControlAction, ControlMessage, ControlReply
from app.contract.signing import CONTROL_SIGNATURE_HEADER, sign_control_request
from app.domain.jobs import Job
from app.domain.runtimes import Runtime
from app.errors import BadGateway, BadRequest, BerthError, Conflict, Forbidden, GatewayTimeout, NotFound
from app.ids import new_id
from app.logs import get_logger, log_event
from app.queues import Queues
from app.services.keyring import RuntimeKeyring
from app.settings import Settings
from app.store import Store

if TYPE_CHECKING:
    import httpx

CONNECT_TIMEOUT_SECONDS = 1.0  # then the queue, with the time that is left
NOTIFY_DIRECT_SECONDS = 2.0  # a worker acknowledges a cancel at once
logger = get_logger("berth.control")

_FAILURES: dict[str, type[BerthError]] = {"not_running": Conflict, "not_found": NotFound, "bad_request": BadRequest,
                                         "forbidden": Forbidden}


class ControlChannel:
    def __init__(self, store: Store, queues: Queues, keyring: RuntimeKeyring, settings: Settings, clock: Clock):
        self.store = store
        self.queues = queues
        self.keyring = keyring
        self.settings = settings
        self.clock = clock
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def _direct(self) -> "httpx.Client":
        """One keep-alive client per process (Lambda keeps it between invocations), made on first use
        so a cold start does not pay for it. Idle connections are dropped sooner than the worker's
        keep-alive (workers.control_server), so the worker never closes one just as it is reused;
        Nagle is off so a request's body never waits for the ACK of its headers."""
        with self._client_lock:
            if self._client is None:
                import httpx

                transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                                limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30))
                self._client = httpx.Client(transport=transport, trust_env=False)
            return self._client

    def _runtime_of(self, job: Job) -> Runtime | None:
        if not (job.runtime_id and job.runtime_workspace):
            return None
        return self.store.runtimes.find(job.runtime_workspace, job.runtime_id)

    def _message(self, job: Job, action: ControlAction, seconds: float,
                 arguments: dict[str, Any] | None = None, sealed_secrets: str | None = None) -> ControlMessage:
        return ControlMessage(request_id=new_id("ctl"), workspace_id=job.workspace_id, job_id=job.job_id,
                              action=action, arguments=arguments or {}, deadline=self.clock.now() + seconds,
                              secrets=sealed_secrets)

    def require_secrets_deliverable(self, job: Job) -> None:
        """Conflict when the job's runtime could not receive new secrets for it (no runtime key)."""
        runtime = self._runtime_of(job)
        if runtime is not None:
            self.keyring.require_key(runtime)

    def request(self, job: Job, action: ControlAction, arguments: dict[str, Any], timeout: float,
                secrets: dict[str, Any] | None = None) -> ControlReply:
        """The worker's reply; `secrets` (the job's, whole, as they now are) replace the running
        job's before the action runs, sealed for its runtime alone."""
        runtime = self._runtime_of(job)
        if runtime is None:
            raise NotFound("the job has no runtime to ask")
        sealed = self.keyring.seal_for(runtime, secrets, job.job_id) if secrets is not None else None
        message = self._message(job, action, timeout, arguments, sealed)
        if self._reachable_directly(runtime):
            reply = self._post(runtime, message, timeout)
            if reply is not None:
                return reply
        self.queues.send(runtime.control_queue_url, message)
        pause = 0.005
        while self.clock.now() < message.deadline:
            answer = self.store.replies.take(job.workspace_id, message.request_id)
            if answer is not None:
                return answer
            self.clock.sleep(pause)
            pause = min(pause * 1.5, 0.05)
        raise _timed_out(action, timeout)

    def _reachable_directly(self, runtime: Runtime) -> bool:
        """Whether to POST to the runtime's control_url. In AWS, only for the platform's own (shared)
        fleet: the URL is the runtime's word, and a workspace's runtime must not point the API at an
        address inside its network. The local stack is one user's machine."""
        return bool(runtime.control_url) and (runtime.shared or self.settings.mode == "local")

    def _post(self, runtime: Runtime, message: ControlMessage, timeout: float) -> ControlReply | None:
        """The worker's reply over its control endpoint; None when the request never reached it."""
        import httpx

        body = message.model_dump_json().encode()
        left = max(message.deadline - self.clock.now(), 0.001)
        headers = {"Content-Type": "application/json",
                   CONTROL_SIGNATURE_HEADER: sign_control_request(self.keyring.signing_key(runtime), body,
                                                                  self.clock.now())}
        try:
            response = self._direct().post(f"{(runtime.control_url or '').rstrip('/')}/control", content=body,
                                           headers=headers,
                                           timeout=httpx.Timeout(left, connect=min(left, CONNECT_TIMEOUT_SECONDS)))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            log_event(logger, "control endpoint unreachable; using the queue", runtime_id=runtime.runtime_id,
                      error=type(error).__name__)
            return None
        except httpx.TimeoutException:
            raise _timed_out(message.action, timeout) from None
        except httpx.TransportError as error:
            raise BadGateway(f"the runtime's control endpoint failed during {message.action} "
                             f"({type(error).__name__}); it may have acted") from None
        if response.status_code == 504:  # the worker's own deadline, a moment before ours
            raise _timed_out(message.action, timeout)
        if response.status_code != 200:
            raise BadGateway(f"the runtime's control endpoint refused {message.action} (HTTP {response.status_code})")
        try:
            return ControlReply.model_validate_json(response.content)
        except ValueError:
            raise BadGateway(f"the runtime's control endpoint sent an unreadable answer to {message.action}") from None

    def notify(self, job: Job, action: ControlAction, *, valid_seconds: float, directly: bool = True) -> None:
        """Tell the job's worker without waiting for its answer (a cancel): directly when it serves a
        control endpoint (waiting at most NOTIFY_DIRECT_SECONDS), else on its control queue, where
        the message stays valid for `valid_seconds` and its reply expires unread. Only for actions
        that may safely arrive twice: a direct request whose fate is unknown (timed out, connection
        lost) goes to the queue as well. `directly=False` for callers outside the fleet's VPC (the
        sweeper)."""
        runtime = self._runtime_of(job)
        if runtime is None:
            return
        if directly and self._reachable_directly(runtime):
            try:
                if self._post(runtime, self._message(job, action, NOTIFY_DIRECT_SECONDS),
                              NOTIFY_DIRECT_SECONDS) is not None:
                    return
            except (GatewayTimeout, BadGateway):
                pass
        self.queues.send(runtime.control_queue_url, self._message(job, action, valid_seconds))

    def call(self, job: Job, action: ControlAction, arguments: dict[str, Any], timeout: float,
             secrets: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the job's worker and return its result, or raise the error its reply names."""
        reply = self.request(job, action, arguments, timeout, secrets)
        if not reply.ok:
            raise _FAILURES.get(reply.code, BadGateway)(reply.error or f"the runtime could not {action}")
        return reply.result


def _timed_out(action: str, timeout: float) -> GatewayTimeout:
    return GatewayTimeout(f"the runtime did not answer {action} within {timeout:g} s; the sandbox is still usable")
