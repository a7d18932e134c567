"""`/v1/jobs`: create, list, read, cancel, and stream events (runtime spec)."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.auth.dependencies import User
from app.errors import BadRequest
from app.contract.messages import JobStatus, JobType
from app.schemas.jobs import CancelResponse, CreateJobRequest, CreateJobResponse, JobList, JobView
from app.services import event_feed, jobs
from app.settings import get_settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=CreateJobResponse)
def create_job(principal: User, body: CreateJobRequest) -> CreateJobResponse:
    """Validate, store and dispatch a job to a runtime that can run it (or queue it until one comes)."""
    return jobs.accepted(jobs.create(principal, body))


@router.get("", response_model=JobList)
def list_jobs(
    principal: User,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    status: JobStatus | None = None,
    type: JobType | None = None,
) -> JobList:
    """Newest first."""
    items, next_cursor = jobs.list_jobs(principal, limit=limit, cursor=cursor, status=status, job_type=type)
    return JobList(jobs=items, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobView)
def read_job(principal: User, job_id: str) -> JobView:
    return jobs.view(jobs.get(principal, job_id))


@router.delete("/{job_id}", response_model=CancelResponse)
def cancel_job(principal: User, job_id: str) -> CancelResponse:
    """A queued job is cancelled at once; a running one is stopped on its worker, which confirms."""
    return jobs.cancel(principal, job_id)


async def event_stream(principal, job_id: str, last_event_id: str | None, after: int | None) -> StreamingResponse:
    start = after if after is not None else 0
    if last_event_id:
        if not last_event_id.isdigit():
            raise BadRequest("Last-Event-ID must be an event sequence number")
        start = int(last_event_id)
    # Subscribed before the first read, so an event stored in between is not missed.
    feed = event_feed.subscribe(principal.workspace_id, job_id)
    try:
        opening = await run_in_threadpool(jobs.opening_events, principal, job_id, start)
    except BaseException:
        feed.close()
        raise
    settings = get_settings()
    frames = jobs.stream_events(feed, start, opening, settings.sse_window_seconds, settings.sse_poll_seconds)
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def job_events(
    principal: User,
    job_id: str,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """Events as SSE, each with its sequence number as `id`. Resumes after `Last-Event-ID` (or
    `?after=`); ends when the job is final, or after a window under API Gateway's 29 s cut."""
    return await event_stream(principal, job_id, last_event_id, after)
