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
import time
from functools import cache

import httpx

from app import clock, queues
from app.auth.principal import Principal
from app.errors import BadGateway, BadRequest, ConditionFailed, Conflict, Forbidden, GatewayTimeout, NotFound
from app.ids import new_id
from app.logs import get_logger, log_event
from app.contract.messages import ControlMessage, ControlReply
from app.contract.signing import CONTROL_SIGNATURE_HEADER, sign_control_request
from app.settings import get_settings
from app.store import get_store
from app.store.runtimes import SHARED_WORKSPACE

REPLY_TTL_SECONDS = 300
CONNECT_TIMEOUT_SECONDS = 1.0  # then the queue, with the time that is left
NOTIFY_DIRECT_SECONDS = 2.0  # a worker acknowledges a cancel at once
logger = get_logger("berth.control")


@cache
def _direct() -> httpx.Client:
    """One keep-alive client per process (Lambda keeps it between invocations), made on first use
    so a cold start does not pay for it. Idle connections are dropped sooner than the worker's
    keep-alive (workers.control_server), so the worker never closes one just as it is reused;
    Nagle is off so a request's body never waits for the ACK of its headers."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                    limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30))
    return httpx.Client(transport=transport, trust_env=False)


def _runtime_of(job: dict) -> dict | None:
    return get_store().runtimes.find(job["runtime_workspace"], job["runtime_id"]) if job.get("runtime_id") else None


def _message(job: dict, action: str, seconds: float, arguments: dict | None = None) -> ControlMessage:
    return ControlMessage(request_id=new_id("ctl"), workspace_id=job["workspace_id"], job_id=job["job_id"],
                          action=action, arguments=arguments or {}, deadline=clock.now() + seconds)


def request(job: dict, action: str, arguments: dict, timeout: float) -> ControlReply:
    store = get_store()
    runtime = _runtime_of(job)
    if runtime is None:
        raise NotFound("the job has no runtime to ask")
    message = _message(job, action, timeout, arguments)
    if _reachable_directly(runtime):
        reply = _post(runtime, message, timeout)
        if reply is not None:
            return reply
    queues.send(runtime["control_queue_url"], message)
    pause = 0.005
    while clock.now() < message.deadline:
        reply = store.jobs.get_reply(job["workspace_id"], message.request_id)
        if reply is not None:
            store.jobs.delete_reply(job["workspace_id"], message.request_id)  # read once; keep the table small
            return ControlReply(ok=reply["ok"], result=reply.get("result", {}), error=reply.get("error", ""),
                                code=reply.get("code", ""))
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)
    raise _timed_out(action, timeout)


def _timed_out(action: str, timeout: float) -> GatewayTimeout:
    return GatewayTimeout(f"the runtime did not answer {action} within {timeout:g} s; the sandbox is still usable")


def _reachable_directly(runtime: dict) -> bool:
    """Whether to POST to the runtime's control_url. In AWS, only for the platform's own (shared)
    fleet: the URL is the runtime's word, and a workspace's runtime must not point the API at an
    address inside its network. The local stack is one user's machine."""
    return bool(runtime.get("control_url")) and (runtime.get("shared") or get_settings().mode == "local")


def _post(runtime: dict, message: ControlMessage, timeout: float) -> ControlReply | None:
    """The worker's reply over its control endpoint; None when the request never reached it."""
    body = message.model_dump_json().encode()
    left = max(message.deadline - clock.now(), 0.001)
    headers = {"Content-Type": "application/json",
               CONTROL_SIGNATURE_HEADER: sign_control_request(runtime["token_digest"], body, clock.now())}
    try:
        response = _direct().post(f"{runtime['control_url'].rstrip('/')}/control", content=body, headers=headers,
                                  timeout=httpx.Timeout(left, connect=min(left, CONNECT_TIMEOUT_SECONDS)))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        log_event(logger, "control endpoint unreachable; using the queue", runtime_id=runtime["runtime_id"],
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


def notify(job: dict, action: str, *, valid_seconds: float, directly: bool = True) -> None:
    """Tell the job's worker without waiting for its answer (a cancel): directly when it serves a
    control endpoint (waiting at most NOTIFY_DIRECT_SECONDS), else on its control queue, where
    the message stays valid for `valid_seconds` and its reply expires unread. Only for actions
    that may safely arrive twice: a direct request whose fate is unknown (timed out, connection
    lost) goes to the queue as well. `directly=False` for callers outside the fleet's VPC (the
    sweeper)."""
    runtime = _runtime_of(job)
    if runtime is None:
        return
    if directly and _reachable_directly(runtime):
        try:
            if _post(runtime, _message(job, action, NOTIFY_DIRECT_SECONDS), NOTIFY_DIRECT_SECONDS) is not None:
                return
        except (GatewayTimeout, BadGateway):
            pass
    queues.send(runtime["control_queue_url"], _message(job, action, valid_seconds))


_FAILURES = {"not_running": Conflict, "not_found": NotFound, "bad_request": BadRequest, "forbidden": Forbidden}


def call(job: dict, action: str, arguments: dict, timeout: float) -> dict:
    """Ask the job's worker and return its result, or raise the error its reply names."""
    reply = request(job, action, arguments, timeout)
    if not reply.ok:
        raise _FAILURES.get(reply.code, BadGateway)(reply.error or f"the runtime could not {action}")
    return reply.result


def store_reply(runtime: Principal, workspace_id: str, request_id: str, reply: ControlReply) -> None:
    if runtime.workspace_id not in (workspace_id, SHARED_WORKSPACE):
        raise NotFound(f"no request {request_id}")
    item = get_store().jobs.reply_item(workspace_id, request_id, int(clock.now()) + REPLY_TTL_SECONDS,
                                       ok=reply.ok, result=reply.result, error=reply.error, code=reply.code,
                                       runtime_id=runtime.subject_id)
    try:
        get_store().table.put(item, must_not_exist=True)
    except ConditionFailed:
        pass  # a retried reply: the first one stands
