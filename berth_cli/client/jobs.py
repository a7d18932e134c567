"""Routes for jobs: `/v1/jobs*`."""

from collections.abc import Iterator
from typing import Any, Literal, TypedDict, cast

from berth_cli.client.http import Http, segment

JobStatus = Literal["queued", "running", "complete", "error", "expired", "cancelled"]
FINAL_STATUSES: tuple[JobStatus, ...] = ("complete", "error", "expired", "cancelled")
JOB_TYPES = ("mcp.test", "mcp.run", "model.inspect", "model.pull", "model.preload", "agent.run", "tool.run")


class WaitingFor(TypedDict):
    capability: str
    reason: str
    message: str


class Job(TypedDict):
    job_id: str
    type: str
    status: JobStatus
    created_at: str
    expires_at: str
    started_at: str | None
    finished_at: str | None
    runtime_id: str | None
    payload: dict[str, Any]
    result: Any
    error: str | None
    cancel_requested: bool
    waiting_for: WaitingFor | None  # while queued with no runtime: what for


class JobPage(TypedDict):
    jobs: list[Job]
    next_cursor: str | None


class CancelResult(TypedDict):
    ok: bool
    status: JobStatus


class JobEvent(TypedDict):
    seq: int
    step: str
    status: str
    message: str
    data: dict[str, Any]
    at: str | None


class JobsApi:
    def __init__(self, http: Http):
        self._http = http

    def page(self, *, status: str | None = None, job_type: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> JobPage:
        """Newest first; `next_cursor` continues."""
        params = {"status": status, "type": job_type, "limit": limit, "cursor": cursor}
        return self._http.request("GET", "/v1/jobs", params=params)

    def get(self, job_id: str) -> Job:
        return self._http.request("GET", f"/v1/jobs/{segment(job_id)}")

    def cancel(self, job_id: str) -> CancelResult:
        return self._http.request("DELETE", f"/v1/jobs/{segment(job_id)}")

    def events(self, job_id: str, *, after: int = 0) -> Iterator[JobEvent]:
        """The job's events after `after` until it is final, across stream windows."""
        for event in self._http.events(f"/v1/jobs/{segment(job_id)}/events", after=after):
            yield cast(JobEvent, event)  # the spec's Event schema
