"""`/v1/jobs`: create, list, read, cancel, and stream events (runtime spec)."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import StreamingResponse

from app.contract.messages import JobStatus, JobType
from app.schemas.jobs import CancelResponse, CreateJobRequest, CreateJobResponse, JobDetail, JobList, JobView
from app.web.deps import Paging, ServicesDep, User
from app.web.openapi import errors
from app.web.sse import job_event_response

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
PULL_JOB_TYPES = frozenset({JobType.model_pull, JobType.model_preload})


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=CreateJobResponse,
             responses=errors(404, 409, 429))
def create_job(principal: User, body: CreateJobRequest, services: ServicesDep) -> CreateJobResponse:
    """Validate, store and dispatch a job to a runtime that can run it, or queue it until one comes
    (`waiting_for` says what it waits for). 409 when no registered runtime offers the job's type,
    unless `wait` is true. Model pulls take the workspace's Hugging Face credential along when the
    repo needs it."""
    create = services.model_installations.create_pull if body.type in PULL_JOB_TYPES else services.jobs.create
    job = create(principal, body.type, body.payload, body.ttl_seconds, wait=body.wait)
    return CreateJobResponse.of(job, services.jobs.waiting_for(job))


@router.get("", response_model=JobList)
def list_jobs(
    principal: User,
    services: ServicesDep,
    paging: Paging,
    status: JobStatus | None = None,
    type: JobType | None = None,
) -> JobList:
    """Newest first."""
    jobs = services.jobs
    page = jobs.page(principal, limit=paging.limit, cursor=paging.cursor, status=status, job_type=type)
    return JobList(jobs=[JobView.of(job, jobs.waiting_for(job)) for job in page.items], next_cursor=page.cursor)


@router.get("/{job_id}", response_model=JobDetail)
def read_job(principal: User, job_id: str, services: ServicesDep) -> JobDetail:
    jobs = services.jobs
    job = jobs.get(principal, job_id)
    return JobDetail.of(job, jobs.waiting_for(job))


@router.delete("/{job_id}", response_model=CancelResponse)
def cancel_job(principal: User, job_id: str, services: ServicesDep) -> CancelResponse:
    """A queued job is cancelled at once; a running one is stopped on its worker, which confirms."""
    return CancelResponse(ok=True, status=services.jobs.cancel(principal, job_id))


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def job_events(
    principal: User,
    job_id: str,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^[0-9]+$")] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """Events as SSE, each with its sequence number as `id`. Resumes after `Last-Event-ID` (or
    `?after=`); ends when the job is final, or after a window under API Gateway's 29 s cut."""
    return await job_event_response(services.job_events, principal, job_id, last_event_id, after)
