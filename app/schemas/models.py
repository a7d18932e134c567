"""Bodies and views of the model routes: sources (search, resolve), profiles, attach, installations,
provider credentials and the catalog. Field names follow the runtime spec: the resolve and attach
bodies are camelCase, profiles and installations snake_case."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.contract.messages import JobStatus
from app.contract.models import InstallationStatus, InstallMode
from app.domain.models import (
    ModelFacts,
    ModelInstallation,
    ModelProfile,
    ProfileStatus,
    Provider,
    ProviderCredential,
    SourceType,
)
from app.schemas.jobs import job_events_url


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)


class ResolveRequest(_Body):
    """A source to resolve (the spec's camelCase names)."""

    source_type: SourceType = Field(default=SourceType.huggingface, alias="sourceType")
    external_id: str | None = Field(default=None, max_length=300, alias="externalId",
                                    description="a Hugging Face repo id (namespace/name)")
    model: str | None = Field(default=None, max_length=300,
                              description="the repo id, or the model an external endpoint serves")
    source_uri: str | None = Field(default=None, max_length=2000, alias="sourceUri",
                                   description="hf://namespace/name, s3://bucket/prefix, or an endpoint's base URL")
    provider: str | None = Field(default=None, max_length=100)
    path: str | None = Field(default=None, max_length=4000, description="local_path: a directory on the runtime host")
    branch: str | None = Field(default=None, min_length=1, max_length=200, description="a branch, tag or commit")
    private: bool | None = Field(default=None, description="a hint only: the hub says whether it is")
    api_key: str | None = Field(default=None, max_length=1000, alias="apiKey",
                                description="an external endpoint's key, to ask it what it serves (never stored)")


class ProfileImport(_Body):
    """The spec's ModelProfileImport; `revision` (a branch, tag or commit) picks what is pinned."""

    source_type: SourceType = SourceType.huggingface
    source_uri: str | None = Field(default=None, max_length=2000)
    provider: str | None = Field(default=None, max_length=100)
    external_id: str | None = Field(default=None, max_length=300)
    display_name: str | None = Field(default=None, max_length=200)
    task: str | None = Field(default=None, max_length=100)
    library: str | None = Field(default=None, max_length=100)
    license: str | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=50)
    revision: str | None = Field(default=None, min_length=1, max_length=200)


class AttachRequest(_Body):
    runtime_id: str = Field(alias="runtimeId", min_length=1, max_length=100,
                            description="a runtime of GET /v1/cloud/runtimes; `external` for external_endpoint")
    install_mode: InstallMode | None = Field(default=None, alias="installMode",
                                             description="default: what the profile's source calls for")
    serving_engine: str = Field(default="vLLM", alias="servingEngine", max_length=50)
    served_model_name: str | None = Field(default=None, alias="servedModelName", max_length=200,
                                          description="what clients send as `model` (default: the repo id)")
    tensor_parallel_size: int | None = Field(default=None, alias="tensorParallelSize", ge=1, le=64)
    max_model_len: int | None = Field(default=None, alias="maxModelLen", ge=16, le=10_000_000)
    gpu_memory_utilization: float | None = Field(default=None, alias="gpuMemoryUtilization", gt=0, le=1)
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = None
    startup_timeout_seconds: float | None = Field(default=None, alias="startupTimeoutSeconds", ge=1, le=7200)
    api_key: str | None = Field(default=None, alias="apiKey", max_length=1000,
                                description="external_endpoint: the server's key, stored sealed")

    def engine_settings(self) -> dict[str, Any]:
        names = ("tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "dtype", "startup_timeout_seconds")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class ProviderCreate(_Body):
    provider: Provider = Provider.huggingface
    token: str = Field(min_length=8, max_length=1000, description="shown never again: only a hint is kept visible",
                       json_schema_extra={"pattern": r"^\S+$"})  # the validator below says why, in words
    name: str = Field(default="", max_length=100)

    @field_validator("token")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(character.isspace() for character in value):
            raise ValueError("a token has no spaces or line breaks")
        return value


# --- views ---------------------------------------------------------------------------------------


class EngineVerdictView(BaseModel):
    servable: bool | None = Field(description="null: only the runtime can tell (a local directory)")
    reason: str


class ProfilePreview(BaseModel):
    """What resolving a source found: a profile before it is stored."""

    source_type: SourceType
    source_uri: str
    provider: str
    external_id: str
    display_name: str
    task: str | None = None
    library: str | None = None
    license: str | None = None
    tags: list[str] = Field(default_factory=list)
    revision: str | None = None
    commit: str | None = Field(default=None, description="the revision pinned")
    architecture: str | None = None
    model_type: str | None = None
    parameter_count: int | None = None
    weight_bytes: int | None = None
    gated: bool = False
    private: bool = False
    access: Literal["open", "granted", "needs_credential", "denied", "unknown"] = Field(
        description="whether the workspace can download it (with its credential, if it has one)")
    status: ProfileStatus
    engines: dict[str, EngineVerdictView] = Field(description="per serving engine: can it serve it, and why (not)")

    @classmethod
    def of(cls, facts: ModelFacts, status: ProfileStatus) -> "ProfilePreview":
        return cls(**{name: getattr(facts, name) for name in _FACT_FIELDS}, status=status,
                   engines={name: EngineVerdictView(servable=verdict.servable, reason=verdict.reason)
                            for name, verdict in facts.engines.items()})


_FACT_FIELDS = ("source_type", "source_uri", "provider", "external_id", "display_name", "task", "library",
                "license", "tags", "revision", "commit", "architecture", "model_type", "parameter_count",
                "weight_bytes", "gated", "private", "access")


class ProfileView(ProfilePreview):
    id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str

    @classmethod
    def of_profile(cls, profile: ModelProfile, status: ProfileStatus) -> "ProfileView":
        preview = ProfilePreview.of(profile.facts, status)
        return cls(**preview.model_dump(), id=profile.profile_id, metadata=profile.metadata,
                   created_at=profile.created_at)


class ProfileList(BaseModel):
    profiles: list[ProfileView]


class ProfileCreated(BaseModel):
    profile: ProfileView


class InstallationView(BaseModel):
    id: str
    model_profile_id: str
    runtime_id: str
    install_mode: InstallMode
    serving_engine: str
    status: InstallationStatus
    progress: int = Field(ge=0, le=100)
    local_path: str | None = None
    model_name: str = Field(description="what /openai/v1 clients send as `model`")
    provider: str
    job_id: str | None = None
    events_url: str | None = None
    source: str
    commit: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    cached: bool | None = None
    restarts: int = 0
    failure: str | None = None
    error: str | None = None
    endpoint_url: str | None = None
    created_at: str
    updated_at: str
    ready_at: str | None = None

    @classmethod
    def of(cls, installation: ModelInstallation) -> "InstallationView":
        return cls(id=installation.installation_id, model_profile_id=installation.profile_id,
                   runtime_id=installation.runtime_id, install_mode=installation.install_mode,
                   serving_engine=installation.serving_engine, status=installation.status,
                   progress=installation.progress, local_path=installation.local_path,
                   model_name=installation.model_name, provider=installation.provider, job_id=installation.job_id,
                   events_url=job_events_url(installation.job_id) if installation.job_id else None,
                   source=installation.source, commit=installation.commit, bytes_done=installation.bytes_done,
                   bytes_total=installation.bytes_total, cached=installation.cached, restarts=installation.restarts,
                   failure=installation.failure, error=installation.error, endpoint_url=installation.endpoint_url,
                   created_at=installation.created_at, updated_at=installation.updated_at,
                   ready_at=installation.ready_at)


class InstallationList(BaseModel):
    installations: list[InstallationView]


class InstallationRead(BaseModel):
    installation: InstallationView


class AttachResponse(BaseModel):
    installation_id: str
    profile_id: str
    job_id: str | None = Field(description="the model.attach job; null for an external endpoint (no job)")
    events_url: str | None = None
    installation: InstallationView

    @classmethod
    def of(cls, installation: ModelInstallation) -> "AttachResponse":
        view = InstallationView.of(installation)
        return cls(installation_id=view.id, profile_id=view.model_profile_id, job_id=view.job_id,
                   events_url=view.events_url, installation=view)


class InstallationRemoved(BaseModel):
    ok: bool = True
    installation_id: str
    job_status: JobStatus | None = Field(description="its job's status after the cancel (null: it had none)")
    evicted: bool = Field(description="whether the revision was freed from the runtime's cache")
    freed_bytes: int = 0
    reason: str = Field(description="why nothing was freed, if nothing was")


class SearchResponse(BaseModel):
    live: bool = Field(description="false: the hub could not be reached; these are curated models")
    items: list[dict[str, Any]]
    reason: str | None = Field(default=None, description="why the hub was not searched")


class ProviderView(BaseModel):
    provider: Provider
    name: str
    hint: str = Field(description="all that is ever shown of the token, e.g. hf_...abcd")
    created_at: str

    @classmethod
    def of(cls, credential: ProviderCredential) -> "ProviderView":
        return cls(provider=credential.provider, name=credential.name, hint=credential.hint,
                   created_at=credential.created_at)


class ProviderList(BaseModel):
    providers: list[ProviderView]


class ProviderCreated(BaseModel):
    provider: ProviderView


class CatalogView(BaseModel):
    items: list[dict[str, Any]] = Field(description="curated MCP servers (kind mcp_server) and models (kind model)")
