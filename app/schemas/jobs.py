"""Job requests and views, with one payload model per job type."""

from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.clock import iso
from app.contract.bodies import JsonBody
from app.contract.messages import JobStatus, JobType
from app.contract.models import REPO_ID_PATTERN
from app.domain.jobs import Job
from app.domain.runtimes import WaitingFor, WaitReason
from app.domain.sandboxes import server_runtime
from app.errors import Unprocessable
from app.schemas.limits import policy_limit


def job_events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


RUNTIME_DESCRIPTION = ("What runs the server (node or python); by default what the start command names "
                       "(python, uv, uvx: python; anything else: node)")


class _Payload(JsonBody):
    pass


class ModelInspectPayload(_Payload):
    model: str = Field(min_length=1, max_length=200, pattern=REPO_ID_PATTERN)
    revision: str | None = Field(default=None, min_length=1, max_length=200)


class ModelPullPayload(ModelInspectPayload):
    allow_patterns: list[str] | None = Field(default=None, max_length=100)


class McpServerPayload(_Payload):
    start_command: str = Field(min_length=1, max_length=4000)
    runtime: Literal["node", "python"] | None = Field(default=None, description=RUNTIME_DESCRIPTION)
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    entity_id: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    builtin: Literal["matrixshell"] | None = Field(default=None, description="a server shipped with the worker")

    @model_validator(mode="after")
    def _runtime_of_the_command(self) -> "McpServerPayload":
        if self.runtime is None:
            self.runtime = server_runtime(self.start_command)  # type: ignore[assignment]
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


def validate_payload(job_type: JobType, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return PAYLOAD_MODELS[job_type].model_validate(payload).model_dump(exclude_none=True)
    except ValidationError as error:
        problems = "; ".join(
            f"payload.{'.'.join(str(p) for p in item['loc']) or '(root)'}: {item['msg']}" for item in error.errors()
        )
        raise Unprocessable(f"invalid payload for {job_type.value}: {problems}") from error


WAIT_DESCRIPTION = ("Accept the job even when no registered runtime has ever offered its type, and let it "
                    "wait for one (without it, such a job is refused with 409)")
TTL_DESCRIPTION = "Defaults to the policy's default TTL; at most the policy's max_ttl_seconds"


class CreateJobRequest(JsonBody):
    """A job: its type, and that type's payload. The OpenAPI document states each type's payload
    (one schema per type, `oneOf`); the service validates the same models."""

    type: JobType

    @field_validator("type")
    @classmethod
    def _created_here(cls, value: JobType) -> JobType:
        # Other types (ssh.*, model.attach) are created by their own routes, which check more.
        if value not in PAYLOAD_MODELS:
            creatable = ", ".join(t.value for t in PAYLOAD_MODELS)
            raise ValueError(f"jobs of type {value.value} are not created through /v1/jobs (here: {creatable})")
        return value
    ttl_seconds: int | None = Field(default=None, ge=1, description=TTL_DESCRIPTION,
                                    json_schema_extra=policy_limit("max_ttl_seconds"))
    payload: dict[str, Any] = Field(default_factory=dict)
    wait: bool = Field(default=False, description=WAIT_DESCRIPTION)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        common = handler.resolve_ref_schema(handler(core_schema))["properties"]
        variants = []
        for job_type, model in PAYLOAD_MODELS.items():
            variants.append({
                "type": "object", "title": f"{job_type.value} job", "additionalProperties": False,
                "required": ["type", "payload"],
                "properties": {"type": {"const": job_type.value}, "payload": handler(model.__pydantic_core_schema__),
                               "ttl_seconds": common["ttl_seconds"], "wait": common["wait"]},
            })
        return {"title": "CreateJobRequest", "oneOf": variants}


class WaitingForView(BaseModel):
    """Why a queued job has no runtime yet."""

    capability: str = Field(description="the job type a runtime must offer")
    reason: WaitReason
    message: str

    @classmethod
    def of(cls, waiting: WaitingFor | None) -> "WaitingForView | None":
        if waiting is None:
            return None
        return cls(capability=waiting.capability, reason=waiting.reason, message=waiting.message)


WAITING_FOR_DESCRIPTION = "While the job waits for a runtime: what for; null once a runtime has it"


class CreateJobResponse(BaseModel):
    success: bool = True
    job_id: str
    status: JobStatus
    events_url: str
    waiting_for: WaitingForView | None = Field(default=None, description=WAITING_FOR_DESCRIPTION)
    warnings: list[str] = Field(default_factory=list, description="What a person should know, in words")

    @classmethod
    def of(cls, job: Job, waiting: WaitingFor | None = None) -> "CreateJobResponse":
        return cls(job_id=job.job_id, status=job.status, events_url=job_events_url(job.job_id),
                   waiting_for=WaitingForView.of(waiting), warnings=[waiting.message] if waiting else [])


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
    waiting_for: WaitingForView | None = Field(default=None, description=WAITING_FOR_DESCRIPTION)

    @classmethod
    def of(cls, job: Job, waiting: WaitingFor | None = None) -> Self:
        return cls(job_id=job.job_id, type=job.type.value, status=job.status, created_at=job.created_at,
                   expires_at=iso(job.deadline), started_at=job.started_at, finished_at=job.finished_at,
                   runtime_id=job.runtime_id, payload=shown_payload(job.payload), result=job.result, error=job.error,
                   cancel_requested=job.cancel_requested, waiting_for=WaitingForView.of(waiting))


def shown_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Environment values may be secrets: they go to the worker but are never shown back."""
    shown = dict(payload)
    if isinstance(shown.get("env"), dict):
        shown["env"] = {name: "***" for name in shown["env"]}
    return shown


class JobDetail(JobView):
    """One job, as `GET /v1/jobs/{id}` answers (a list holds `JobView`s)."""

    success: bool = True


class JobList(BaseModel):
    success: bool = True
    jobs: list[JobView]
    next_cursor: str | None = None


class CancelResponse(BaseModel):
    success: bool = True
    ok: bool
    status: JobStatus
