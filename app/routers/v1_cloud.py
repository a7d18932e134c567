"""`/v1/cloud/*`: join tokens, runtimes and their protocol, usage and audit (runtime spec)."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from app import queues
from app.auth.dependencies import AdminUser, Runtime, User
from app.contract.messages import (ClaimRequest, ClaimResponse, ControlReply, EventBatch, EventBatchResult,
    HeartbeatRequest, HeartbeatResponse, LeaseRenewal, LeaseRenewed, LeaseRequest, LeaseResponse, ReceiptRequest,
    RegisterRequest, RegisterResponse)
from app.schemas.accounts import OkResponse
from app.schemas.runtimes import JoinTokenCreate, JoinTokenCreated
from app.services import activity, control, jobs, runtimes

router = APIRouter(prefix="/v1/cloud", tags=["runtimes"])


@router.post("/join-tokens", status_code=status.HTTP_201_CREATED, response_model=JoinTokenCreated)
def mint_join_token(principal: AdminUser, body: JoinTokenCreate) -> JoinTokenCreated:
    """A single- or limited-use token that registers runtimes; the secret is shown only here."""
    secret, record = runtimes.mint_join_token(principal, body)
    return JoinTokenCreated(token=secret, join_token=record)


@router.get("/join-tokens")
def list_join_tokens(principal: AdminUser, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                     cursor: Annotated[str | None, Query(max_length=2000)] = None) -> dict:
    """Active tokens (uses left, not expired), without secrets."""
    tokens, next_cursor = runtimes.list_join_tokens(principal, limit=limit, cursor=cursor)
    return {"join_tokens": tokens, "next_cursor": next_cursor}


@router.get("/runtimes")
def list_runtimes(principal: User) -> dict:
    return {"runtimes": runtimes.visible_runtimes(principal.workspace_id)}


@router.get("/usage")
def usage(principal: User, days: Annotated[int, Query(ge=1, le=90)] = 30) -> dict:
    """Usage by kind over the last `days` days: jobs by type, runtime-seconds, bytes pulled."""
    return activity.usage_report(principal.workspace_id, days)


@router.get("/audit")
def audit_log(principal: AdminUser, limit: Annotated[int, Query(ge=1, le=200)] = 50,
              cursor: Annotated[str | None, Query(max_length=2000)] = None) -> dict:
    """Who did what, newest first."""
    events, next_cursor = activity.list_audit(principal.workspace_id, limit=limit, cursor=cursor)
    return {"events": events, "next_cursor": next_cursor}


# --- the runtime protocol (runtime-token auth) ---------------------------------------------------


@router.post("/runtimes/register", status_code=status.HTTP_201_CREATED, response_model=RegisterResponse)
def register(body: RegisterRequest) -> RegisterResponse:
    """Exchange a join token for a runtime id and runtime token (401 for a bad, used-up or expired token)."""
    return runtimes.register(body)


@router.post("/runtimes/heartbeat", response_model=HeartbeatResponse)
def heartbeat(runtime: Runtime, body: HeartbeatRequest) -> HeartbeatResponse:
    return runtimes.heartbeat(runtime, body)


@router.post("/runtimes/lease", response_model=LeaseResponse)
def lease(runtime: Runtime, body: LeaseRequest) -> LeaseResponse:
    """Long-poll the runtime's queue on its behalf (runtimes on hosts without AWS credentials)."""
    url = runtimes.queue_url(runtimes.runtime_of(runtime), body.queue)
    return LeaseResponse(messages=queues.receive(url, max_messages=body.max_messages, wait_seconds=body.wait_seconds,
                                                 visibility_seconds=body.visibility_seconds))


@router.post("/runtimes/ack", response_model=OkResponse)
def ack(runtime: Runtime, body: ReceiptRequest) -> OkResponse:
    queues.delete(runtimes.queue_url(runtimes.runtime_of(runtime), body.queue), body.receipt)
    return OkResponse()


@router.post("/runtimes/visibility", response_model=OkResponse)
def visibility(runtime: Runtime, body: ReceiptRequest) -> OkResponse:
    url = runtimes.queue_url(runtimes.runtime_of(runtime), body.queue)
    queues.change_visibility(url, body.receipt, body.visibility_seconds or 0)
    return OkResponse()


@router.post("/runtimes/jobs/{workspace_id}/{job_id}/claim", response_model=ClaimResponse)
def claim(runtime: Runtime, workspace_id: str, job_id: str, body: ClaimRequest) -> ClaimResponse:
    return jobs.claim(runtime, workspace_id, job_id, body)


@router.post("/runtimes/jobs/{workspace_id}/{job_id}/lease", response_model=LeaseRenewed)
def renew(runtime: Runtime, workspace_id: str, job_id: str, body: LeaseRenewal) -> LeaseRenewed:
    cancel = jobs.renew_lease(runtime, workspace_id, job_id, body.claim_id, body.lease_seconds)
    return LeaseRenewed(ok=True, cancel_requested=cancel)


@router.post("/runtimes/jobs/{workspace_id}/{job_id}/events", response_model=EventBatchResult)
def post_events(runtime: Runtime, workspace_id: str, job_id: str, body: EventBatch) -> EventBatchResult:
    return jobs.ingest_events(runtime, workspace_id, job_id, body)


@router.post("/runtimes/control/{workspace_id}/{request_id}/reply", response_model=OkResponse)
def control_reply(runtime: Runtime, workspace_id: str, request_id: str, body: ControlReply) -> OkResponse:
    control.store_reply(runtime, workspace_id, request_id, body)
    return OkResponse()
