"""Job requests and views, with one payload model per job type."""

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.clock import iso
from app.contract.bodies import NOT_BLANK, JsonBody
from app.contract.messages import JobStatus, JobType, SandboxServer
from app.contract.models import REPO_ID_PATTERN, ModelPullPayload, ModelServePayload
from app.contract.packages import NPM, PYPI, PackageSpec
from app.contract.sandbox_files import SANDBOX_FILES_DIR, SandboxFile
from app.domain.jobs import Job
from app.domain.runtimes import WaitingFor, WaitReason
from app.domain.sandboxes import server_runtime
from app.errors import Unprocessable
from app.schemas.limits import policy_limit


def job_events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


RUNTIME_DESCRIPTION = ("What runs the server (node or python); by default what the package or the start "
                       "command names (pypi, python, uv, uvx: python; anything else: node)")
# What to run: a start command (not blank), or a package the runtime installs itself (npm, PyPI);
# a package of another registry needs the start command that runs it. Sandboxes speak stdio or
# streamable HTTP, never SSE.
NAMES_A_SERVER: JsonDict = {
    "anyOf": [
        {"required": ["package"], "properties": {"package": {"type": "object", "required": ["registryType"],
                                                             "properties": {"registryType": {"enum": [NPM, PYPI]}}}}},
        {"required": ["start_command"], "properties": {"start_command": {"pattern": NOT_BLANK}}},
    ],
    "not": {"required": ["package"], "properties": {"package": {
        "required": ["transport"], "properties": {"transport": {"required": ["type"],
                                                                "properties": {"type": {"const": "sse"}}}}}}},
}


class _Payload(JsonBody):
    # Fields whose values are secrets: kept out of the payload, sealed at rest and for the runtime
    # (app.services.keyring), shown by name only.
    secret_fields: ClassVar[tuple[str, ...]] = ()


class ModelInspectPayload(_Payload):
    model: str = Field(min_length=1, max_length=200, pattern=REPO_ID_PATTERN)
    revision: str | None = Field(default=None, min_length=1, max_length=200)


def _given_by_berth(payload: ModelPullPayload) -> ModelPullPayload:
    """A token never travels in a payload: the workspace's provider credential goes with the pulls
    that need it, sealed. Installation ids are attaching's."""
    if payload.token is not None:
        raise ValueError("a token is never part of a payload: store it with POST /v1/cloud/providers")
    if payload.installation_id is not None:
        raise ValueError("installation_id is set by attaching a model profile")
    return payload


class ModelPullJob(ModelPullPayload):
    """`model.pull` (app.contract.models): put a model in a runtime's cache, verified."""

    secret_fields: ClassVar[tuple[str, ...]] = ()  # a token goes as the job's secret, not in its payload
    _checked = model_validator(mode="after")(_given_by_berth)


class ModelPreloadJob(ModelServePayload):
    """`model.preload` (app.contract.models): pull, then start the engine once until it is healthy."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    _checked = model_validator(mode="after")(_given_by_berth)


# A host directory a sandbox's server needs (one a runtime offers with `--sandbox-tool-dir`).
ToolDir = Annotated[str, Field(min_length=2, max_length=1024, pattern=r"^/")]
TOOL_DIRS_DESCRIPTION = ("host directories the server needs besides those in its start command (absolute "
                         "paths); it is placed only on a runtime that offers them as tool directories")


class McpServerPayload(_Payload):
    model_config = ConfigDict(json_schema_extra=NAMES_A_SERVER)

    start_command: str = Field(default="", max_length=4000)
    package: PackageSpec | None = None
    runtime: Literal["node", "python"] | None = Field(default=None, description=RUNTIME_DESCRIPTION)
    transport: Literal["stdio", "http"] = "stdio"
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    entity_id: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    builtin: Literal["matrixshell"] | None = Field(default=None, description="a server shipped with the worker")
    tool_dirs: list[ToolDir] | None = Field(default=None, max_length=16, description=TOOL_DIRS_DESCRIPTION)
    secret_fields: ClassVar[tuple[str, ...]] = ("env",)
    files: list[SandboxFile] = Field(default_factory=list, max_length=50,
                                     description=f"files the runtime fetches for the server, read-only in "
                                                 f"{SANDBOX_FILES_DIR}")

    @model_validator(mode="after")
    def _names_a_server(self) -> "McpServerPayload":
        # As the worker reads it.
        server = SandboxServer.model_validate(self.model_dump(exclude_none=True, by_alias=True))
        if self.runtime is None:
            python = server.package is not None and server.package.registry_type == PYPI
            self.runtime = "python" if python else server_runtime(self.start_command)  # type: ignore[assignment]
        return self


class ToolRunPayload(_Payload):
    session_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)


class AgentRunPayload(_Payload):
    agent: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)


PAYLOAD_MODELS: dict[JobType, type[_Payload] | type[ModelPullJob] | type[ModelPreloadJob]] = {
    JobType.model_inspect: ModelInspectPayload,
    JobType.model_pull: ModelPullJob,
    JobType.model_preload: ModelPreloadJob,
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
                   runtime_id=job.runtime_id, payload=shown_payload(job), result=job.result, error=job.error,
                   cancel_requested=job.cancel_requested, waiting_for=WaitingForView.of(waiting))


def shown_payload(job: Job) -> dict[str, Any]:
    """The payload with its secret fields back in place, values masked: they go to the runtime but
    are never shown back."""
    masked = {field: {name: "***" for name in names} for field, names in (job.secret_names or {}).items()}
    return {**job.payload, **masked}


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
