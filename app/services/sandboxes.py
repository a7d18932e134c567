"""Sandboxes: jobs of type `mcp.test` (and long-lived `mcp.run`), seen as sessions, sandboxes and
containers. Everything that needs the server itself — its tools, a call, a lifecycle action, a
proxied request — is a control message to the runtime that runs it, answered within a bound.
"""

import base64
from concurrent.futures import ThreadPoolExecutor

from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from app import clock
from app.auth.principal import Principal
from app.contract.messages import JobStatus, JobType, ProxyRequest, ProxyResponse, ToolCallArguments
from app.contract.policy import SandboxRejected
from app.contract.signing import proxy_token_claims, sign_proxy_token
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from app.schemas.jobs import CreateJobRequest
from app.schemas.sandboxes import ContainerView, SandboxPatch, SandboxRequest, SandboxResponse, SandboxView, ToolView
from app.services import control, event_feed, jobs, system
from app.settings import get_settings
from app.store import get_store
from app.store.table import Condition

SANDBOX_TYPES = (JobType.mcp_test.value, JobType.mcp_run.value)
PROXY_TOKEN_SECONDS = 300
INSPECT_TIMEOUT_SECONDS = 3.0
ACTIONS = ("start", "stop", "restart")


def check_start_command(start_command: str) -> None:
    try:
        system.sandbox_policy().check_command(start_command)
    except SandboxRejected as error:
        if "empty" in str(error):
            raise Unprocessable(f"start_command: {error}") from error
        raise Forbidden(f"start_command refused by policy: {error}") from error


def create(principal: Principal, request: SandboxRequest, job_type: JobType = JobType.mcp_test,
           builtin: str | None = None) -> dict:
    check_start_command(request.start_command)
    payload = request.model_dump(exclude={"ttl_seconds"}, exclude_none=True)
    if builtin:
        payload["builtin"] = builtin
    return jobs.create(principal, CreateJobRequest(type=job_type, ttl_seconds=request.ttl_seconds, payload=payload))


def accepted(job: dict) -> SandboxResponse:
    return SandboxResponse(session_id=job["job_id"], job_id=job["job_id"], status=job["status"],
                           expires_at=clock.iso(job["deadline"]), events_url=session_events_url(job["job_id"]))


def session_events_url(session_id: str) -> str:
    return f"/v1/sandbox/sessions/{session_id}/events"


def get(principal: Principal, sandbox_id: str) -> dict:
    job = get_store().jobs.get(principal.workspace_id, sandbox_id)
    if job is None or job["type"] not in SANDBOX_TYPES:
        raise NotFound(f"no sandbox {sandbox_id}")
    return job


def _server_state(job: dict) -> tuple[str, str | None]:
    """The server's state as the worker last reported it in a `sandbox` event."""
    if job["status"] in (JobStatus.complete.value, JobStatus.cancelled.value, JobStatus.expired.value):
        return "ended", None
    if job["status"] == JobStatus.error.value:
        return "failed", None
    report = get_store().jobs.latest_event(job["workspace_id"], job["job_id"], step="sandbox")
    if report is None:
        return "starting", None
    return report.get("data", {}).get("state", "starting"), report.get("data", {}).get("isolation")


def view(job: dict) -> SandboxView:
    payload = job.get("payload", {})
    state, isolation = _server_state(job)
    return SandboxView(
        id=job["job_id"], session_id=job["job_id"], job_id=job["job_id"], type=job["type"], status=job["status"],
        state=state, runtime=payload.get("runtime", "node"), transport=payload.get("transport", "stdio"),
        start_command=payload.get("start_command", ""), env=sorted(payload.get("env", {})),
        labels=job.get("labels") or payload.get("labels", {}), entity_id=payload.get("entity_id"),
        runtime_id=job.get("runtime_id"), isolation=isolation, created_at=job["created_at"],
        expires_at=clock.iso(job["deadline"]), error=job.get("error"), events_url=session_events_url(job["job_id"]),
    )


def list_sandboxes(principal: Principal, *, limit: int, cursor: str | None, status: JobStatus | None):
    page = get_store().jobs.page(principal.workspace_id, limit=limit, cursor=cursor,
                                 status=status.value if status else None, job_type=JobType.mcp_test.value)
    return [view(job) for job in page.items], page.cursor


def _running(job: dict) -> dict:
    if job["status"] != JobStatus.running.value:
        raise Conflict(f"sandbox {job['job_id']} is {job['status']}, not running")
    return job


async def wait_until_started(principal: Principal, sandbox_id: str, wait_seconds: float) -> dict | None:
    """A readiness wait: return once the server has left `starting` (or its job ended), or when
    `wait_seconds` pass. Woken by the worker's `sandbox` event; the table is re-read meanwhile.
    Returns the `sandbox` event that ended the wait, if one did."""
    settings = get_settings()
    feed = event_feed.subscribe(principal.workspace_id, sandbox_id)
    try:
        deadline = clock.now() + wait_seconds
        job = await run_in_threadpool(get, principal, sandbox_id)
        while (await run_in_threadpool(_server_state, job))[0] == "starting":
            remaining = deadline - clock.now()
            if remaining <= 0:
                return None
            published = await feed.wait(min(settings.sse_poll_seconds, remaining))
            reports = [event for event in published if event["step"] == "sandbox"]
            if reports:
                return reports[-1]
            if any(jobs.is_final_event(event) for event in published):
                return None  # the job ended: the caller reads the outcome
            job = await run_in_threadpool(get, principal, sandbox_id)
        return None
    finally:
        feed.close()


_TOOL_LIST = TypeAdapter(list[ToolView])


def tools_reported_at_start(report: dict | None) -> list[ToolView] | None:
    """The tools a `running` report carries (the worker's listing as the server came up), or None
    when it carries none: a listing too large for an event, or a report of another state."""
    data = (report or {}).get("data", {})
    if data.get("state") != "running" or "tool_definitions" not in data:
        return None
    try:  # the runtime's word: anything unreadable means asking the server instead
        return _TOOL_LIST.validate_python(data["tool_definitions"])
    except ValidationError:
        return None


def _routable(principal: Principal, sandbox_id: str) -> dict:
    """A running sandbox's job for a call on its server (read through the store's brief cache)."""
    job = get_store().jobs.running(principal.workspace_id, sandbox_id)
    if job is None or job["type"] not in SANDBOX_TYPES:
        raise NotFound(f"no sandbox {sandbox_id}")
    return _running(job)


def tools(principal: Principal, sandbox_id: str) -> list[ToolView]:
    job = _routable(principal, sandbox_id)
    result = control.call(job, "tools.list", {}, timeout=get_settings().tool_call_timeout_seconds)
    return [ToolView(**tool) for tool in result.get("tools", [])]


def call_tool(principal: Principal, sandbox_id: str, name: str, arguments: dict) -> dict:
    job = _routable(principal, sandbox_id)
    wait = get_settings().tool_call_timeout_seconds
    # The worker gives up a little before the API does, so its answer (a timeout) still arrives.
    request = ToolCallArguments(name=name, arguments=arguments, timeout_seconds=max(wait - 1.0, 0.5))
    result = control.call(job, "tools.call", request.model_dump(), timeout=wait)
    return {"ok": bool(result.get("ok")), "result": result.get("result", {})}


def act(principal: Principal, sandbox_id: str, action: str) -> str:
    """Stop, start or restart the server; the sandbox (its job) lives on until deleted or expired."""
    if action not in ACTIONS:
        raise NotFound(f"no action {action}: use one of {', '.join(ACTIONS)}")
    job = _running(get(principal, sandbox_id))
    result = control.call(job, f"sandbox.{action}", {}, timeout=get_settings().tool_call_timeout_seconds)
    return result.get("state", "unknown")


def delete(principal: Principal, sandbox_id: str) -> JobStatus:
    get(principal, sandbox_id)
    return jobs.cancel(principal, sandbox_id).status


def update(principal: Principal, sandbox_id: str, patch: SandboxPatch) -> dict:
    job = get(principal, sandbox_id)
    if job["status"] in {s.value for s in (JobStatus.complete, JobStatus.error, JobStatus.expired,
                                            JobStatus.cancelled)}:
        raise Conflict(f"sandbox {sandbox_id} has ended ({job['status']})")
    settings = get_settings()
    changes: dict = {}
    if patch.ttl_seconds is not None:
        if patch.ttl_seconds > settings.max_ttl_seconds:
            raise Unprocessable(f"ttl_seconds exceeds the policy's max_ttl_seconds {settings.max_ttl_seconds}")
        deadline = job["created_epoch"] + patch.ttl_seconds
        if deadline <= clock.now():
            raise BadRequest("that ttl_seconds would end the sandbox in the past; DELETE it instead")
        changes.update(deadline=deadline, ttl_seconds=patch.ttl_seconds)
    if patch.env is not None:
        changes["payload"] = {**job["payload"], "env": patch.env}
    if patch.labels is not None:
        changes["labels"] = patch.labels
    if not changes:
        return job
    job = get_store().jobs.update(job["workspace_id"], sandbox_id, set=changes,
                                  condition=Condition(in_={"status": [JobStatus.queued.value, JobStatus.running.value]}))
    if job["status"] == JobStatus.running.value and ("deadline" in changes or "payload" in changes):
        update = {"expires_at": changes.get("deadline"), "env": patch.env}
        control.call(job, "sandbox.update", {k: v for k, v in update.items() if v is not None},
                     timeout=settings.tool_call_timeout_seconds)
    return job


# --- containers: the managed sandboxes and their processes, across runtimes --------------------


def containers(principal: Principal) -> list[ContainerView]:
    running = []
    for job_type in SANDBOX_TYPES:
        running += get_store().jobs.page(principal.workspace_id, limit=200, cursor=None,
                                         status=JobStatus.running.value, job_type=job_type).items
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(_inspect, running))


def _inspect(job: dict) -> ContainerView:
    base = {"id": job["job_id"], "type": job["type"], "runtime_id": job.get("runtime_id")}
    try:
        found = control.call(job, "sandbox.inspect", {}, timeout=INSPECT_TIMEOUT_SECONDS)
    except Exception as error:  # one silent runtime must not hide the others' containers
        return ContainerView(**base, state="unknown", detail=str(error))
    return ContainerView(**base, state=found.get("state", "unknown"), isolation=found.get("isolation"),
                         pids=found.get("pids", []), rss_bytes=found.get("rss_bytes", 0))


def container_action(principal: Principal, container_id: str, action: str) -> str:
    if action not in (*ACTIONS, "remove"):
        raise NotFound(f"no action {action}: use one of {', '.join(ACTIONS)}, remove")
    if action == "remove":
        return delete(principal, container_id).value
    return act(principal, container_id, action)


# --- the runtime proxy ---------------------------------------------------------------------------


def runtime_config(principal: Principal, sandbox_id: str) -> dict:
    job = get(principal, sandbox_id)
    runtime = get_store().runtimes.get(job["runtime_workspace"], job["runtime_id"]) if job.get("runtime_id") else None
    proxy = f"{get_settings().base_url}/api/runtime/proxy/{sandbox_id}/"
    return {
        "success": True,
        "sandbox_id": sandbox_id,
        "status": job["status"],
        "transport": job["payload"].get("transport", "stdio"),
        "runtime": {"id": runtime["runtime_id"], "name": runtime["name"], "shared": runtime["shared"]} if runtime else None,
        "proxy_url": proxy,
        "mcp_url": proxy + "mcp" if job["payload"].get("transport") == "http" else None,
        "proxy_auth_url": f"{get_settings().base_url}/api/runtime/proxy-auth/{sandbox_id}",
    }


def proxy_token(principal: Principal, sandbox_id: str, method: str) -> dict:
    job = _running(get(principal, sandbox_id))
    runtime = get_store().runtimes.get(job["runtime_workspace"], job["runtime_id"])
    claims = proxy_token_claims(sandbox_id, job["workspace_id"], job["runtime_id"], method, clock.now(),
                                PROXY_TOKEN_SECONDS)
    return {"success": True, "token": sign_proxy_token(runtime["token_digest"], claims),
            "expires_at": clock.iso(claims["exp"]), "method": claims["method"], "header": "X-Berth-Proxy-Token"}


def proxy(principal: Principal, sandbox_id: str, method: str, path: str, query: str, headers: dict,
          body: bytes, token: str | None) -> ProxyResponse:
    job = _running(get(principal, sandbox_id))
    if job["payload"].get("transport") != "http":
        raise Conflict("this sandbox's server speaks stdio; only streamable-HTTP servers can be proxied")
    request = ProxyRequest(token=token or proxy_token(principal, sandbox_id, method)["token"], method=method, path=path,
                           query=query, headers=headers, body_b64=base64.b64encode(body).decode())
    result = control.call(job, "proxy", request.model_dump(), timeout=get_settings().tool_call_timeout_seconds)
    return ProxyResponse(**result)
