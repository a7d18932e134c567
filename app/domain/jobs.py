"""Jobs, their events and the job state machine.

States follow the spec: queued → running → complete | error | expired | cancelled, plus
running → queued when a runtime goes silent and the job is dispatched again. A final status is
final: every transition is a conditional write naming the statuses it may leave, and those are
always among OPEN_JOB_STATUSES.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import chain, zip_longest
from typing import Any

from app.contract.messages import FINAL_JOB_STATUSES, EventStatus, JobStatus, JobType

OPEN_JOB_STATUSES = frozenset(JobStatus) - FINAL_JOB_STATUSES
SANDBOX_JOB_TYPES = frozenset({JobType.mcp_test, JobType.mcp_run})
# Jobs that run in a sandbox, so their message carries the sandbox policy.
POLICED_JOB_TYPES = SANDBOX_JOB_TYPES | {JobType.tool_run}

# A worker's event with step "job" and one of these statuses ends the job with the matching status.
_FINAL_EVENT_STATUSES = {
    EventStatus.complete: JobStatus.complete,
    EventStatus.error: JobStatus.error,
    EventStatus.cancelled: JobStatus.cancelled,
    EventStatus.expired: JobStatus.expired,
}
JOB_STEP = "job"
RETENTION_SECONDS = 30 * 24 * 3600  # a finished job and its events stay readable this long
# What a job's payload and labels may take as stored. A job is one item (at most 400 KB) that also
# receives its result (an event's data, at most the contract's EVENT_DATA_MAX_BYTES, 128 KiB) and
# its bookkeeping: this leaves room for both, so finishing a job can never fail for its size.
JOB_PAYLOAD_MAX_BYTES = 200 * 1024


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    """Nothing leaves a final status; an open job may be claimed (queued → running), claimed
    again after a lapsed lease (running → running), taken back (running → queued), re-queued
    while still waiting for its worker (queued → queued) or finished."""
    return current in OPEN_JOB_STATUSES


def in_turns(jobs: Iterable["Job"]) -> list["Job"]:
    """Jobs one workspace after another, each workspace's in the order given: every workspace's
    first, then every workspace's second, and so on; so no workspace's backlog goes before
    another workspace's oldest."""
    queues: dict[str, list[Job]] = {}
    for job in jobs:
        queues.setdefault(job.workspace_id, []).append(job)
    return [job for job in chain.from_iterable(zip_longest(*queues.values())) if job is not None]


def ending_status(step: str, status: EventStatus) -> JobStatus | None:
    """The final status an event ends its job with, or None for a progress event."""
    return _FINAL_EVENT_STATUSES.get(status) if step == JOB_STEP else None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One stored event of a job, numbered from 1 without gaps."""

    seq: int
    step: str
    status: EventStatus
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    at: str | None = None

    @property
    def ends_job(self) -> bool:
        return ending_status(self.step, self.status) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A worker's lease on a job: granted to one delivery of one dispatch, renewed while it runs."""

    claim_id: str
    runtime_id: str
    dispatch: int
    worker_id: str
    lease_until: float
    started_at: str | None = None  # set by the claim that starts the job (not by a re-claim)
    started_epoch: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    job_id: str
    workspace_id: str
    type: JobType
    status: JobStatus
    payload: dict[str, Any] = field(default_factory=dict)
    ttl_seconds: int
    created_at: str
    created_epoch: float
    deadline: float  # epoch seconds: the job expires then
    created_by: str = ""
    # How many times the job was assigned to a runtime (0: never); a claim must name the current one.
    dispatch: int = 0
    # The sequence number of the last event the API itself wrote (the `queued` one, or a re-queue's).
    event_seq: int = 0
    labels: dict[str, str] | None = None
    # Its secrets (e.g. a sandbox's env values), sealed with the KMS key (app.services.keyring), and
    # their names by field (`{"env": ["TOKEN"]}`), which views show instead. The final transition
    # removes the sealed value.
    secrets: str | None = None
    secret_names: dict[str, list[str]] | None = None
    pinned_runtime_id: str | None = None  # a tool.run job runs where its session runs
    # Only a runtime whose registered labels include all of these may run it (an infra SSH job
    # goes where its host can be reached).
    runtime_labels: dict[str, str] | None = None
    # Assignment.
    runtime_id: str | None = None
    runtime_workspace: str | None = None
    dispatched_at: float | None = None
    # The claim (a lease) of the worker running it.
    claim_id: str | None = None
    claimed_by: str | None = None
    lease_until: float = 0
    claims: int = 0
    started_at: str | None = None
    started_epoch: float | None = None
    last_event_at: str | None = None
    cancel_requested: bool = False
    # The outcome.
    finished_at: str | None = None
    result: Any = None
    error: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATUSES

    @property
    def is_sandbox(self) -> bool:
        return self.type in SANDBOX_JOB_TYPES

    @property
    def cancels_without_its_worker(self) -> bool:
        """Queued and never claimed: nothing runs it yet, so the API alone can cancel it."""
        return self.status == JobStatus.queued and not self.claim_id

    def lease_is_live(self, now: float) -> bool:
        return bool(self.claim_id) and self.lease_until > now

    def assigned_to(self, runtime_id: str, runtime_workspace: str, now: float) -> "Job":
        """This job placed on a runtime: the next dispatch."""
        return replace(self, runtime_id=runtime_id, runtime_workspace=runtime_workspace, dispatched_at=now,
                       dispatch=self.dispatch + 1)
