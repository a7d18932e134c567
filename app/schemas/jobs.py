"""Job requests and views, with one payload model per job type."""

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.clock import iso
from app.contract.messages import JobStatus, JobType, SandboxServer
from app.contract.packages import PackageSpec
from app.domain.jobs import Job
from app.errors import Unprocessable


def job_events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # Fields whose values are secrets: kept out of the payload, sealed at rest and for the runtime
    # (app.services.keyring), shown by name only.
    secret_fields: ClassVar[tuple[str, ...]] = ()


class ModelInspectPayload(_Payload):
    model: str = Field(min_length=1, max_length=200, pattern=r"^[\w.\-]+(/[\w.\-]+)?$")
    revision: str | None = Field(default=None, min_length=1, max_length=200)


class ModelPullPayload(ModelInspectPayload):
    allow_patterns: list[str] | None = Field(default=None, max_length=100)


class McpServerPayload(_Payload):
    start_command: str = Field(default="", max_length=4000)
    package: PackageSpec | None = None
    runtime: Literal["node", "python"] = "node"
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    entity_id: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    builtin: Literal["matrixshell"] | None = Field(default=None, description="a server shipped with the worker")
    secret_fields: ClassVar[tuple[str, ...]] = ("env",)

    @model_validator(mode="after")
    def _names_a_server(self) -> "McpServerPayload":
        SandboxServer.model_validate(self.model_dump(exclude_none=True, by_alias=True))  # as the worker reads it
        return self


class ToolRunPayload(_Payload):
    session_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)


class AgentRunPayload(_Payload):
    agent: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)


PAYLOAD_MODELS: dict[JobType, type[_Payload]] = {
    JobType.model_inspect: ModelInspectPayload,
    JobType.model_pull: ModelPullPayload,
    JobType.model_preload: ModelInspectPayload,
    JobType.mcp_test: McpServerPayload,
    JobType.mcp_run: McpServerPayload,
    JobType.tool_run: ToolRunPayload,
    JobType.agent_run: AgentRunPayload,
}


def payload_model(job_type: JobType) -> type[BaseModel]:
    """The model a job type's payload is checked with: PAYLOAD_MODELS for what `/v1/jobs` creates;
    infra SSH payloads (created only by app.services.ssh_operations) on first use."""
    if job_type in PAYLOAD_MODELS:
        return PAYLOAD_MODELS[job_type]
    from app.schemas.infra_ssh import SSH_PAYLOAD_MODELS

    if job_type in SSH_PAYLOAD_MODELS:
        return SSH_PAYLOAD_MODELS[job_type]
    raise Unprocessable(f"jobs of type {job_type.value} are created by their own routes")


def validate_payload(job_type: JobType, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        validated = payload_model(job_type).model_validate(payload)
        return validated.model_dump(mode="json", exclude_none=True, by_alias=True)
    except ValidationError as error:
        problems = "; ".join(
            f"payload.{'.'.join(str(p) for p in item['loc']) or '(root)'}: {item['msg']}" for item in error.errors()
        )
        raise Unprocessable(f"invalid payload for {job_type.value}: {problems}") from error


def split_secrets(job_type: JobType, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A validated payload without its secret fields, and those fields that hold anything."""
    fields: tuple[str, ...] = getattr(payload_model(job_type), "secret_fields", ())
    public = {name: value for name, value in payload.items() if name not in fields}
    return public, {name: payload[name] for name in fields if payload.get(name)}


def secret_names(secrets: dict[str, Any]) -> dict[str, list[str]]:
    """What views show of secrets: the names in each field (a field of one value has none)."""
    return {field: sorted(value) if isinstance(value, dict) else [] for field, value in secrets.items()}


class CreateJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: JobType

    @field_validator("type")
    @classmethod
    def _created_here(cls, value: JobType) -> JobType:
        # Other types (ssh.*, model.attach) are created by their own routes, which check more.
        if value not in PAYLOAD_MODELS:
            creatable = ", ".join(t.value for t in PAYLOAD_MODELS)
            raise ValueError(f"jobs of type {value.value} are not created through /v1/jobs (here: {creatable})")
        return value
    ttl_seconds: int | None = Field(default=None, ge=1, description="Defaults to the policy's default TTL")
    payload: dict[str, Any] = Field(default_factory=dict)


class CreateJobResponse(BaseModel):
    job_id: str
    status: JobStatus
    events_url: str

    @classmethod
    def of(cls, job: Job) -> "CreateJobResponse":
        return cls(job_id=job.job_id, status=job.status, events_url=job_events_url(job.job_id))


class JobView(BaseModel):
    job_id: str
    type: str
    status: JobStatus
    created_at: str
    expires_at: str
    started_at: str | None = None
    finished_at: str | None = None
    runtime_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str | None = None
    cancel_requested: bool = False

    @classmethod
    def of(cls, job: Job) -> "JobView":
        return cls(job_id=job.job_id, type=job.type.value, status=job.status, created_at=job.created_at,
                   expires_at=iso(job.deadline), started_at=job.started_at, finished_at=job.finished_at,
                   runtime_id=job.runtime_id, payload=shown_payload(job), result=job.result, error=job.error,
                   cancel_requested=job.cancel_requested)


def shown_payload(job: Job) -> dict[str, Any]:
    """The payload with its secret fields back in place, values masked: they go to the runtime but
    are never shown back."""
    masked = {field: {name: "***" for name in names} for field, names in (job.secret_names or {}).items()}
    return {**job.payload, **masked}


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = None


class CancelResponse(BaseModel):
    ok: bool
    status: JobStatus
