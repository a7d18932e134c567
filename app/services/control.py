"""Synchronous requests to a running job through its runtime's control queue.

The API sends a control message and waits, bounded, for the reply the worker posts back; the
reply is an item with a short TTL, so an answer that arrives after the wait is simply unread.
"""

import time

from app import clock, queues
from app.auth.principal import Principal
from app.errors import BadGateway, BadRequest, ConditionFailed, Conflict, Forbidden, GatewayTimeout, NotFound
from app.ids import new_id
from app.messages import ControlMessage, ControlReply
from app.store import get_store
from app.store.runtimes import SHARED_WORKSPACE

REPLY_TTL_SECONDS = 300


def request(job: dict, action: str, arguments: dict, timeout: float) -> ControlReply:
    store = get_store()
    runtime = store.runtimes.get(job["runtime_workspace"], job["runtime_id"]) if job.get("runtime_id") else None
    if runtime is None:
        raise NotFound("the job has no runtime to ask")
    request_id = new_id("ctl")
    deadline = clock.now() + timeout
    queues.send(runtime["control_queue_url"], ControlMessage(
        request_id=request_id, workspace_id=job["workspace_id"], job_id=job["job_id"], action=action,
        arguments=arguments, deadline=deadline))
    pause = 0.005
    while clock.now() < deadline:
        reply = store.jobs.get_reply(job["workspace_id"], request_id)
        if reply is not None:
            store.jobs.delete_reply(job["workspace_id"], request_id)  # read once; keep the table small
            return ControlReply(ok=reply["ok"], result=reply.get("result", {}), error=reply.get("error", ""),
                                code=reply.get("code", ""))
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)
    raise GatewayTimeout(f"the runtime did not answer {action} within {timeout:g} s; the sandbox is still usable")


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
