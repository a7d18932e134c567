"""`/api/infra/ssh/*`: the audited host inventory, named actions, the approval lease, runs and
port forwards (admin only; app.services.ssh_operations says in what order what is checked).

Refusals carry their kind beside the status: `denied` (403, or 404 for a name the inventory lacks),
`approval_required` (403), `validation_failed` (422); an inventory that cannot be used is 503.
"""

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.contract.ssh.actions import SshAction
from app.schemas.infra_ssh import (
    ActionList,
    ForwardList,
    ForwardRequest,
    ForwardView,
    HostList,
    HostView,
    LeaseAnswer,
    LeaseApproval,
    LeaseRequest,
    RunList,
    RunRequest,
    RunView,
)
from app.services.ssh_operations import allowed_on
from app.web.deps import ServicesDep, SshOperator
from app.web.openapi import errors
from app.web.proxying import passed_headers

router = APIRouter(prefix="/api/infra/ssh", tags=["infra ssh"])

_READ = errors(401, 403, 503)
_PAGED = errors(400, 401, 403, 503)  # 400: a cursor this listing did not hand out
_CHANGE = errors(401, 403, 409, 422, 503)
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=2000)]


# --- the inventory ---------------------------------------------------------------------------------


@router.get("/hosts", response_model=HostList, responses=_READ)
def list_hosts(caller: SshOperator, services: ServicesDep) -> HostList:
    """The audited host inventory, without secrets: each host's pinned host key fingerprint and
    where its client key is kept, never a key."""
    inventory = services.ssh_operations.inventory(caller)
    return HostList(hosts=[HostView.of(host, *allowed_on(inventory, host)) for host in inventory.hosts])


@router.get("/hosts/{name}", response_model=HostView, responses=errors(401, 403, 404, 503))
def read_host(caller: SshOperator, name: str, services: ServicesDep) -> HostView:
    operations = services.ssh_operations
    host = operations.host(caller, name)
    return HostView.of(host, *allowed_on(operations.inventory(caller), host))


@router.get("/actions", response_model=ActionList, responses=_READ)
def list_actions(caller: SshOperator, services: ServicesDep) -> ActionList:
    """The named actions: command template, typed parameters, where each may run, timeout, output cap."""
    return ActionList(actions=services.ssh_operations.inventory(caller).actions)


@router.get("/actions/{name}", response_model=SshAction, responses=errors(401, 403, 404, 503))
def describe_action(caller: SshOperator, name: str, services: ServicesDep) -> SshAction:
    return services.ssh_operations.action(caller, name)


# --- the approval lease ---------------------------------------------------------------------------------


@router.get("/admin-session", response_model=LeaseAnswer, responses=errors(401, 403))
def inspect_lease(caller: SshOperator, services: ServicesDep) -> LeaseAnswer:
    """The approval lease: pending (waiting for a person), active (with its time left) or the last
    one, over."""
    return LeaseAnswer.of(services.ssh_leases.current(caller), services.clock.now())


@router.post("/admin-session", status_code=status.HTTP_201_CREATED, response_model=LeaseAnswer,
             responses=errors(401, 403, 409, 422))
def begin_lease(caller: SshOperator, body: LeaseRequest, services: ServicesDep) -> LeaseAnswer:
    """Begin a time-boxed lease. Signed in (a session), it is active at once; with an admin API key
    (and `X-User-Id`) it is a request that waits for a person to approve it, signed in."""
    return LeaseAnswer.of(services.ssh_leases.request(caller, body.reason, body.ttl_seconds), services.clock.now())


@router.post("/admin-session/approve", response_model=LeaseAnswer, responses=errors(401, 403, 404, 409, 422))
def approve_lease(caller: SshOperator, body: LeaseApproval, services: ServicesDep) -> LeaseAnswer:
    """Approve a pending lease by its id: a person signed in only (never an API key). Its time box
    starts now."""
    return LeaseAnswer.of(services.ssh_leases.approve(caller, body.lease_id), services.clock.now())


@router.delete("/admin-session", response_model=LeaseAnswer, responses=errors(401, 403))
def revoke_lease(caller: SshOperator, services: ServicesDep) -> LeaseAnswer:
    """Revoke the active lease (or decline a pending one): every run and forward still open under
    it is stopped. Revoking what is over changes nothing."""
    lease, stopped = services.ssh_leases.end(caller)
    return LeaseAnswer.of(lease, services.clock.now(), stopped)


# --- runs ---------------------------------------------------------------------------------------------


@router.post("/actions/{name}/run", response_model=RunView, responses={
    202: {"model": RunView, "description": "still running after wait_seconds: poll GET /api/infra/ssh/runs/{id}"},
    **errors(401, 403, 404, 409, 422, 429, 503)})
async def run_action(caller: SshOperator, name: str, body: RunRequest, services: ServicesDep,
                     response: Response) -> RunView:
    """Run a named action on a host, while a lease is active, as a job on a runtime that can reach
    the host; wait up to `wait_seconds` for its result (200), else answer 202 with what to poll."""
    operations = services.ssh_operations
    job = await run_in_threadpool(operations.start_run, caller, name, body.host, body.parameters)
    job = await operations.wait_for_end(job, body.wait_seconds)
    if not job.is_final:
        response.status_code = status.HTTP_202_ACCEPTED
    return await run_in_threadpool(lambda: RunView.of(job, operations.outcome(job)))


@router.get("/runs", response_model=RunList, responses=_PAGED)
def list_runs(caller: SshOperator, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None) -> RunList:
    """Runs, newest first."""
    operations = services.ssh_operations
    page = operations.runs(caller, limit=limit, cursor=cursor)
    return RunList(runs=[RunView.of(job, operations.outcome(job)) for job in page.items], next_cursor=page.cursor)


@router.get("/runs/{run_id}", response_model=RunView, responses=errors(401, 403, 404))
def read_run(caller: SshOperator, run_id: str, services: ServicesDep) -> RunView:
    operations = services.ssh_operations
    job = operations.run(caller, run_id)
    return RunView.of(job, operations.outcome(job))


# --- forwards -------------------------------------------------------------------------------------------


def _forward_view(services: ServicesDep, job: Any) -> ForwardView:
    forwards = services.ssh_forwards
    return ForwardView.of(job, forwards.opened(job), services.ssh_operations.outcome(job))


@router.post("/forwards", status_code=status.HTTP_201_CREATED, response_model=ForwardView,
             responses=errors(401, 403, 404, 409, 422, 429, 503))
async def open_forward(caller: SshOperator, body: ForwardRequest, services: ServicesDep) -> ForwardView:
    """Open an allowed port forward to a host, held by a runtime that can reach it until closed, its
    TTL passes or the lease ends; wait up to `wait_seconds` for it to open. Reach it at `proxy_url`."""
    forwards = services.ssh_forwards
    job = await run_in_threadpool(forwards.open, caller, body.forward, body.host, body.ttl_seconds)
    job = await services.ssh_operations.wait_until(job, body.wait_seconds, lambda now: forwards.opened(now) is not None)
    return await run_in_threadpool(_forward_view, services, job)


@router.get("/forwards", response_model=ForwardList, responses=_PAGED)
def list_forwards(caller: SshOperator, services: ServicesDep, limit: Limit = 50,
                  cursor: Cursor = None) -> ForwardList:
    """Forwards, newest first."""
    page = services.ssh_forwards.page(caller, limit=limit, cursor=cursor)
    return ForwardList(forwards=[_forward_view(services, job) for job in page.items], next_cursor=page.cursor)


@router.get("/forwards/{forward_id}", response_model=ForwardView, responses=errors(401, 403, 404))
def read_forward(caller: SshOperator, forward_id: str, services: ServicesDep) -> ForwardView:
    return _forward_view(services, services.ssh_forwards.get(caller, forward_id))


@router.delete("/forwards/{forward_id}", response_model=ForwardView, responses=errors(401, 403, 404))
def close_forward(caller: SshOperator, forward_id: str, services: ServicesDep) -> ForwardView:
    return _forward_view(services, services.ssh_forwards.close(caller, forward_id))


async def proxy(caller: SshOperator, forward_id: str, path: str, request: Request, services: ServicesDep) -> Response:
    """HTTP to the forwarded service, through the runtime holding the forward (while the lease is
    active). The answer comes back as the service gave it, but for headers that could act on the
    API's origin, and neutralised (`Content-Security-Policy: sandbox`)."""
    body = await request.body()
    answer = await run_in_threadpool(
        lambda: services.ssh_forwards.proxy(caller, forward_id, method=request.method, path=path,
                                            query=request.url.query, headers=passed_headers(request.headers),
                                            body=body))
    return Response(base64.b64decode(answer.body_b64), status_code=answer.status,
                    headers=passed_headers(answer.headers))


# One route per method, so each has its own operation id in the OpenAPI document.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
    router.add_api_route("/forwards/{forward_id}/proxy/{path:path}", proxy, methods=[_method],
                         operation_id=f"infra_ssh_forward_proxy_{_method.lower()}",
                         summary=f"Proxy {_method} through the forward", responses=errors(401, 403, 404, 409, 502, 504))
