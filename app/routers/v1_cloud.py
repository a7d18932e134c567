"""`/v1/cloud/*`: join tokens, runtimes and their protocol, usage and audit (runtime spec)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from app.contract.messages import (
    ClaimRequest,
    ClaimResponse,
    ControlReply,
    EventBatch,
    EventBatchResult,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseRenewal,
    LeaseRenewed,
    LeaseRequest,
    LeaseResponse,
    ReceiptRequest,
    RegisterRequest,
    RegisterResponse,
)
from app.schemas.accounts import OkResponse
from app.schemas.runtimes import (
    JoinTokenCreate,
    JoinTokenCreated,
    JoinTokenDeleted,
    RuntimeDeleted,
    join_token_view,
    runtime_view,
)
from app.schemas.system import audit_view, usage_view
from app.web.deps import AdminUser, CallingRuntime, ServicesDep, User
from app.web.openapi import errors

router = APIRouter(prefix="/v1/cloud", tags=["runtimes"])


@router.post("/join-tokens", status_code=status.HTTP_201_CREATED, response_model=JoinTokenCreated)
def mint_join_token(principal: AdminUser, body: JoinTokenCreate, services: ServicesDep) -> JoinTokenCreated:
    """A single- or limited-use token that registers runtimes; the secret is shown only here."""
    secret, token = services.runtimes.mint_join_token(principal, name=body.name, uses=body.uses,
                                                      ttl_seconds=body.ttl_seconds, shared=body.shared,
                                                      labels=body.labels)
    return JoinTokenCreated(token=secret, join_token=join_token_view(token))


@router.get("/join-tokens")
def list_join_tokens(principal: AdminUser, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                     cursor: Annotated[str | None, Query(max_length=2000)] = None) -> dict[str, Any]:
    """Active tokens (uses left, not expired), without secrets."""
    page = services.runtimes.join_tokens(principal, limit=limit, cursor=cursor)
    return {"join_tokens": [join_token_view(token) for token in page.items], "next_cursor": page.cursor}


@router.delete("/join-tokens/{token_id}", response_model=JoinTokenDeleted, responses=errors(401, 403, 404, 409))
def delete_join_token(principal: AdminUser, token_id: str, services: ServicesDep) -> JoinTokenDeleted:
    """Revoke a join token of this workspace: it registers nothing from now on (audited). Runtimes
    it registered stay; delete them one by one."""
    token = services.runtimes.delete_join_token(principal, token_id)
    return JoinTokenDeleted(token_id=token.token_id)


@router.get("/runtimes")
def list_runtimes(principal: User, services: ServicesDep) -> dict[str, Any]:
    runtimes = services.runtimes
    now = services.clock.now()
    return {"runtimes": [runtime_view(r, runtimes.status(r, now)) for r in runtimes.visible(principal.workspace_id)]}


@router.delete("/runtimes/{runtime_id}", response_model=RuntimeDeleted, responses=errors(401, 403, 404))
def delete_runtime(principal: AdminUser, runtime_id: str, services: ServicesDep) -> RuntimeDeleted:
    """Delete a runtime of this workspace (a shared one: the platform operator only): its token and
    runtime key stop working, its queues go, its unfinished jobs are dispatched elsewhere and a
    sandbox that cannot move is ended (audited)."""
    removed = services.runtimes.delete(principal, runtime_id)
    return RuntimeDeleted(runtime_id=removed.runtime_id, jobs_requeued=removed.requeued, jobs_ended=removed.ended)


@router.get("/usage")
def usage(principal: User, services: ServicesDep, days: Annotated[int, Query(ge=1, le=90)] = 30) -> dict[str, Any]:
    """Usage by kind over the last `days` days: jobs by type, runtime-seconds, bytes pulled."""
    return usage_view(services.activity.usage(principal.workspace_id, days))


@router.get("/audit")
def audit_log(principal: AdminUser, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
              cursor: Annotated[str | None, Query(max_length=2000)] = None) -> dict[str, Any]:
    """Who did what, newest first."""
    page = services.activity.audit_page(principal.workspace_id, limit=limit, cursor=cursor)
    return {"events": [audit_view(entry) for entry in page.items], "next_cursor": page.cursor}


# --- the runtime protocol (runtime-token auth) ---------------------------------------------------


@router.post("/runtimes/register", status_code=status.HTTP_201_CREATED, response_model=RegisterResponse)
def register(body: RegisterRequest, services: ServicesDep) -> RegisterResponse:
    """Exchange a join token for a runtime id and runtime token (401 for a bad, used-up or expired token)."""
    return services.runtimes.register(body)


@router.post("/runtimes/heartbeat", response_model=HeartbeatResponse)
def heartbeat(runtime: CallingRuntime, body: HeartbeatRequest, services: ServicesDep) -> HeartbeatResponse:
    return services.runtimes.heartbeat(runtime, body)


@router.post("/runtimes/lease", response_model=LeaseResponse)
def lease(runtime: CallingRuntime, body: LeaseRequest, services: ServicesDep) -> LeaseResponse:
    """Long-poll the runtime's queue on its behalf (runtimes on hosts without AWS credentials)."""
    return LeaseResponse(messages=services.runtimes.lease(runtime, body))


@router.post("/runtimes/ack", response_model=OkResponse)
def ack(runtime: CallingRuntime, body: ReceiptRequest, services: ServicesDep) -> OkResponse:
    services.runtimes.acknowledge(runtime, body)
    return OkResponse()


@router.post("/runtimes/visibility", response_model=OkResponse)
def visibility(runtime: CallingRuntime, body: ReceiptRequest, services: ServicesDep) -> OkResponse:
    services.runtimes.extend(runtime, body)
    return OkResponse()


@router.post("/runtimes/jobs/{workspace_id}/{job_id}/claim", response_model=ClaimResponse)
def claim(runtime: CallingRuntime, workspace_id: str, job_id: str, body: ClaimRequest,
          services: ServicesDep) -> ClaimResponse:
    return services.runtime_protocol.claim(runtime, workspace_id, job_id, body)


@router.post("/runtimes/jobs/{workspace_id}/{job_id}/lease", response_model=LeaseRenewed)
def renew(runtime: CallingRuntime, workspace_id: str, job_id: str, body: LeaseRenewal,
          services: ServicesDep) -> LeaseRenewed:
    cancel = services.runtime_protocol.renew_lease(runtime, workspace_id, job_id, body.claim_id, body.lease_seconds)
    return LeaseRenewed(ok=True, cancel_requested=cancel)


@router.post("/runtimes/jobs/{workspace_id}/{job_id}/events", response_model=EventBatchResult)
def post_events(runtime: CallingRuntime, workspace_id: str, job_id: str, body: EventBatch,
                services: ServicesDep) -> EventBatchResult:
    return services.runtime_protocol.ingest_events(runtime, workspace_id, job_id, body)


@router.post("/runtimes/control/{workspace_id}/{request_id}/reply", response_model=OkResponse)
def control_reply(runtime: CallingRuntime, workspace_id: str, request_id: str, body: ControlReply,
                  services: ServicesDep) -> OkResponse:
    services.runtime_protocol.store_reply(runtime, workspace_id, request_id, body)
    return OkResponse()
