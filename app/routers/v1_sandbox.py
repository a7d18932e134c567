"""`/v1/sandbox/sessions`: sandboxes as the runtime spec sees them (an alias over `mcp.test`)."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.schemas.jobs import CancelResponse
from app.schemas.sandboxes import (
    SandboxDetail,
    SandboxRequest,
    SandboxResponse,
    ToolCallRequest,
    ToolCallResponse,
    ToolList,
)
from app.services.sandboxes import tools_reported_at_start
from app.web.deps import ServicesDep, User
from app.web.openapi import errors
from app.web.sse import job_event_response

router = APIRouter(prefix="/v1/sandbox/sessions", tags=["sandboxes"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=SandboxResponse, responses=errors(409, 429))
def create_session(principal: User, body: SandboxRequest, services: ServicesDep) -> SandboxResponse:
    """Start an MCP server in a sandbox on a runtime. 403 when the policy refuses the command; 409
    when no registered runtime runs sandboxes, unless `wait` is true (`waiting_for` says what it waits for)."""
    job = services.sandboxes.create(principal, body.payload(), body.ttl_seconds, wait=body.wait)
    return SandboxResponse.of(job, services.jobs.waiting_for(job))


@router.get("/{session_id}", response_model=SandboxDetail)
def read_session(principal: User, session_id: str, services: ServicesDep) -> SandboxDetail:
    sandboxes = services.sandboxes
    job = sandboxes.get(principal, session_id)
    return SandboxDetail.of(sandboxes.sandbox(job), services.jobs.waiting_for(job))


@router.delete("/{session_id}", response_model=CancelResponse)
def delete_session(principal: User, session_id: str, services: ServicesDep) -> CancelResponse:
    return CancelResponse(ok=True, status=services.sandboxes.delete(principal, session_id))


@router.get("/{session_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def session_events(principal: User, session_id: str, services: ServicesDep,
                         last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^[0-9]+$")] = None,
                         after: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
    await run_in_threadpool(services.sandboxes.get, principal, session_id)
    return await job_event_response(services.job_events, principal, session_id, last_event_id, after)


@router.get("/{session_id}/tools", response_model=ToolList, responses=errors(409, 502, 504))
async def list_tools(principal: User, session_id: str, services: ServicesDep,
                     wait_seconds: Annotated[float, Query(ge=0, le=25)] = 0) -> ToolList:
    """The tools the server advertises; 409 while the session is not running. With
    `wait_seconds`, first wait (bounded) for a starting server to come up; if the wait ends on
    the server's `running` report, the tools it listed then are the answer."""
    sandboxes = services.sandboxes
    if wait_seconds:
        report = await sandboxes.wait_until_started(principal, session_id, wait_seconds)
        if (listed := tools_reported_at_start(report)) is not None:
            return ToolList(tools=listed)
    return ToolList(tools=await run_in_threadpool(sandboxes.tools, principal, session_id))


@router.post("/{session_id}/tools/call", response_model=ToolCallResponse, responses=errors(409, 502, 504))
def call_tool(principal: User, session_id: str, body: ToolCallRequest, services: ServicesDep) -> ToolCallResponse:
    """A tool's own failure is `ok: false` in a 200; 409 when not running, 504 when it takes too long."""
    return ToolCallResponse(**services.sandboxes.call_tool(principal, session_id, body.name, body.arguments))
