"""The worker contract for models: the payloads of `model.pull`, `model.preload` and `model.attach`,
the progress every model event carries, and the control actions of a serving engine.

Jobs
- `model.pull`: put a model on the runtime (pulled into its Hugging Face cache, or a mounted
  directory checked) and verify it; the job completes with the snapshot's path.
- `model.preload`: the same, then start the serving engine once, wait until it is healthy and stop
  it (proves the runtime can serve the model and warms the engine's compile caches); completes.
- `model.attach`: what attaching a profile creates. The same pull, then the engine is started and
  supervised until the job is cancelled or expires: the engine lives exactly as long as the job,
  so deleting an installation is cancelling its job. The job never completes on its own.

Install modes: `pull_from_source` (a Hugging Face repo), `mount_volume` (a directory already on the
runtime host, under one of the worker's allowed volume roots), and `external_endpoint`, which is
API-only: the API calls a user's OpenAI-compatible server itself and creates no worker job, so a
worker refuses a payload that names it.

Events: every event of a model job carries `ModelProgress` as its `data`; its
`installation_status` and `progress` are what the API copies onto the installation. Event steps are
the installation statuses (`checking`, `downloading`, `verifying`, `attached`, `ready`, `failed`)
plus `engine` for engine starts and restarts; the event status is `running`, `ok` or `error`.
"""

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# --- enums -----------------------------------------------------------------------------------


class InstallMode(str, Enum):
    pull_from_source = "pull_from_source"
    mount_volume = "mount_volume"
    external_endpoint = "external_endpoint"  # API-only: never a worker job


class ServingEngine(str, Enum):
    """Engines a worker can start (SGLang joins later). The spec's `servingEngine: vLLM` maps here
    case-insensitively (`ServingEngine.parse`)."""

    vllm = "vllm"

    @classmethod
    def parse(cls, name: str) -> "ServingEngine":
        return cls(name.strip().lower())


class InstallationStatus(str, Enum):
    queued = "queued"
    checking = "checking"
    downloading = "downloading"
    verifying = "verifying"
    attached = "attached"
    ready = "ready"
    failed = "failed"


class FailureCode(str, Enum):
    """Why a model job failed, so the API can say it well (and mark a profile `gated`)."""

    invalid = "invalid"  # the payload cannot be served as given
    not_found = "not_found"  # no such repo, or a private one the token cannot see
    revision_not_found = "revision_not_found"
    gated = "gated"  # a gated repo and no token with access
    unauthorized = "unauthorized"  # the hub refused the token itself
    hub_unreachable = "hub_unreachable"
    disk_full = "disk_full"
    verification_failed = "verification_failed"
    volume_invalid = "volume_invalid"  # a mount_volume path that is missing, not allowed or not a model
    no_gpu = "no_gpu"  # not enough free GPUs on the runtime for the engine
    engine_unavailable = "engine_unavailable"  # the runtime cannot start this engine
    engine_failed = "engine_failed"  # exited, never became healthy, or crashed past its restarts


# --- payloads --------------------------------------------------------------------------------

REPO_ID_PATTERN = r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)?$"  # ASCII, as the Hub allows (and as JSON Schema reads it)
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,199}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EngineSpec(_Strict):
    """How to serve: the engine and its settings from the profile; the GPUs come from the runtime."""

    engine: ServingEngine = ServingEngine.vllm
    served_model_name: str = Field(pattern=SERVED_NAME_PATTERN)  # what clients send as `model`
    # GPUs the engine takes (CUDA_VISIBLE_DEVICES); 1 when not given.
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=64)
    max_model_len: int | None = Field(default=None, ge=16, le=10_000_000)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = None
    startup_timeout_seconds: float = Field(default=900, ge=1, le=7200)  # until /health answers 200
    max_restarts: int = Field(default=3, ge=0, le=20)  # crashes forgiven before the job fails


class ModelPullPayload(_Strict):
    """`model.pull`. `model`/`revision` match `model.inspect`; `revision` is a branch, tag or commit
    (the worker pins it to a commit before downloading)."""

    install_mode: InstallMode = InstallMode.pull_from_source
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=REPO_ID_PATTERN)
    revision: str = Field(default="main", min_length=1, max_length=200)
    local_path: str | None = Field(default=None, min_length=1, max_length=4000)  # mount_volume
    # A provider credential (Hugging Face token) for this pull only: never logged, never in an event
    # or result. Plain for now; the API will deliver it sealed for the runtime later.
    token: SecretStr | None = Field(default=None, min_length=1, max_length=1000)
    installation_id: str | None = Field(default=None, max_length=100)  # echoed in every event

    @field_validator("local_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\0" in value):
            raise ValueError("local_path must be an absolute path")
        return value

    @model_validator(mode="after")
    def _source_matches_mode(self) -> "ModelPullPayload":
        if self.install_mode is InstallMode.external_endpoint:
            raise ValueError("external_endpoint installs are served by the API itself, not by a runtime job")
        if self.install_mode is InstallMode.pull_from_source and self.model is None:
            raise ValueError("pull_from_source needs `model` (a Hugging Face repo id)")
        if self.install_mode is InstallMode.mount_volume and self.local_path is None:
            raise ValueError("mount_volume needs `local_path` (a directory on the runtime host)")
        return self

    def message_payload(self) -> dict[str, Any]:
        """The payload as the API puts it on a JobMessage: the one place the token is revealed."""
        payload = self.model_dump(mode="json", exclude_none=True, exclude={"token"})
        if self.token is not None:
            payload["token"] = self.token.get_secret_value()
        return payload


class ModelServePayload(ModelPullPayload):
    """`model.preload` and `model.attach`: a pull plus the engine to serve it with."""

    engine: EngineSpec


# --- progress --------------------------------------------------------------------------------


class ModelProgress(BaseModel):
    """The `data` of every model-job event; the API maps it onto the installation."""

    installation_status: InstallationStatus
    progress: int = Field(ge=0, le=100)
    installation_id: str | None = None
    commit: str | None = None  # the pinned revision
    bytes_done: int | None = None
    bytes_total: int | None = None  # of the files the engine needs
    files_done: int | None = None
    files_total: int | None = None
    cached: bool | None = None  # the verified snapshot was already on this runtime: nothing downloaded
    local_path: str | None = None  # the snapshot (or mounted directory) on the runtime host
    served_model_name: str | None = None
    # Where the engine answers on the runtime host (loopback): reach it through `model.proxy`.
    endpoint: str | None = None
    restarts: int = 0
    failure: FailureCode | None = None
    log_tail: str | None = None  # the engine's last output lines, when it failed

    @classmethod
    def of_event(cls, data: dict[str, Any]) -> "ModelProgress | None":
        """The progress in an event's data; None for events that carry none."""
        return cls.model_validate(data) if "installation_status" in data else None


# Progress is one number for the whole job. Downloading spans most of it, by bytes; a serving job
# keeps the last 5 points for the engine, a pull-only job reaches 100 when the snapshot is verified.
_DOWNLOAD_START, _VERIFY_START, _ATTACHED_SERVING = 1, 90, 95


def progress_for(status: InstallationStatus, fraction: float = 0.0, *, serving: bool) -> int:
    """The job's progress (0–100) in `status`, `fraction` of the way through it."""
    fraction = min(max(fraction, 0.0), 1.0)
    if status in (InstallationStatus.queued, InstallationStatus.checking):
        return 0
    if status is InstallationStatus.downloading:
        return _DOWNLOAD_START + int((_VERIFY_START - _DOWNLOAD_START) * fraction)
    if status is InstallationStatus.verifying:
        end = _ATTACHED_SERVING if serving else 100
        return min(_VERIFY_START + int((end - _VERIFY_START) * fraction), end - 1)
    if status is InstallationStatus.attached:
        return _ATTACHED_SERVING if serving else 100
    if status is InstallationStatus.ready:
        return 100
    raise ValueError(f"{status.value} has no progress of its own: keep the last one")


# --- control actions -------------------------------------------------------------------------
# `model.status` (no arguments) -> InstallationState
# `model.proxy` (EngineRequest) -> messages.ProxyResponse: one HTTP request to the ready engine.
#     Over the queue the answer is buffered; over the direct control endpoint the same message
#     posted to `/control/stream` is answered with the engine's response as it streams.
# `model.evict` (CacheEviction) -> EvictionResult: free a revision from the runtime's cache.

# What the API may reach on an engine: the OpenAI API routed by `/openai/v1`. Everything else an
# engine serves (vLLM's LoRA loading, sleep mode, metrics, ...) stays on the runtime.
ENGINE_PROXY_PATHS = ("v1/models", "v1/chat/completions", "v1/completions", "v1/embeddings")


class EngineRequest(_Strict):
    """`model.proxy`: like the sandbox `proxy` action, without its token: the API itself routes
    `/openai/v1` by the request's model, and only the API can put a control message to a runtime."""

    method: Literal["GET", "POST"]
    path: str = Field(max_length=100)  # one of ENGINE_PROXY_PATHS, without a leading slash
    query: str = Field(default="", max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    body_b64: str = ""
    timeout_seconds: float = Field(default=120, gt=0, le=3600)  # and never past the message's deadline

    @field_validator("path")
    @classmethod
    def _routed(cls, value: str) -> str:
        if value not in ENGINE_PROXY_PATHS:
            raise ValueError(f"only {', '.join(ENGINE_PROXY_PATHS)} are served through the proxy")
        return value


class InstallationState(ModelProgress):
    """`model.status`: the installation as the worker sees it now."""

    job_id: str
    engine: ServingEngine | None = None
    engine_pid: int | None = None
    ready_since: float | None = None  # epoch seconds the engine last became healthy


class CacheEviction(_Strict):
    """`model.evict`: the API sends it (addressed to the installation's job) once no installation on
    this runtime uses the revision any more."""

    model: str = Field(min_length=1, max_length=200, pattern=REPO_ID_PATTERN)
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")


class EvictionResult(BaseModel):
    evicted: bool
    freed_bytes: int = 0
    reason: str = ""  # why nothing was evicted (in use by a running job, not cached)


# --- what vLLM serves ------------------------------------------------------------------------
# One judgement for the worker's `model.inspect` and the API's resolve (before a pull is attempted).

# Architectures vLLM serves, with their config.json model_type so that a config declaring only a
# model_type can still be judged. Deliberately curated rather than exhaustive: text generation, and
# the encoder models vLLM serves for embeddings.
VLLM_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "Llama4ForConditionalGeneration": "llama4",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3",
    "PhiForCausalLM": "phi",
    "Phi3ForCausalLM": "phi3",
    "PhiMoEForCausalLM": "phimoe",
    "GPT2LMHeadModel": "gpt2",
    "GPTBigCodeForCausalLM": "gpt_bigcode",
    "GPTJForCausalLM": "gptj",
    "GPTNeoXForCausalLM": "gpt_neox",
    "FalconForCausalLM": "falcon",
    "OPTForCausalLM": "opt",
    "BloomForCausalLM": "bloom",
    "MPTForCausalLM": "mpt",
    "StableLmForCausalLM": "stablelm",
    "Starcoder2ForCausalLM": "starcoder2",
    "DeepseekForCausalLM": "deepseek",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "CohereForCausalLM": "cohere",
    "Cohere2ForCausalLM": "cohere2",
    "DbrxForCausalLM": "dbrx",
    "InternLM2ForCausalLM": "internlm2",
    "GraniteForCausalLM": "granite",
    "GraniteMoeForCausalLM": "granitemoe",
    "OlmoForCausalLM": "olmo",
    "Olmo2ForCausalLM": "olmo2",
    "OlmoeForCausalLM": "olmoe",
    "ExaoneForCausalLM": "exaone",
    "Glm4ForCausalLM": "glm4",
    "GptOssForCausalLM": "gpt_oss",
    "BertModel": "bert",  # embeddings (`/v1/embeddings`)
    "XLMRobertaModel": "xlm-roberta",  # embeddings
}
VLLM_MODEL_TYPES = frozenset(VLLM_ARCHITECTURES.values())
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def vllm_verdict(architecture: str | None, model_type: str | None, paths: list[str]) -> dict[str, Any]:
    """`{"servable": bool, "reason": str}`: whether vLLM can serve a repo with this architecture,
    model_type and files."""
    if architecture is None:
        return {"servable": False, "reason": "the repo declares no architecture or model_type (no config.json?)"}
    # The model_type only vouches for a config that declares no architectures (it then stands in
    # for one); a declared architecture such as LlamaForSequenceClassification is judged by itself.
    judged_by_model_type = architecture == model_type and model_type in VLLM_MODEL_TYPES
    if architecture not in VLLM_ARCHITECTURES and not judged_by_model_type:
        return {"servable": False, "reason": f"vLLM does not serve the {architecture} architecture"}
    if not any(path.endswith(WEIGHT_SUFFIXES) for path in paths):
        return {"servable": False, "reason": "the repo has no safetensors or .bin weights"}
    return {"servable": True, "reason": f"vLLM serves the {architecture} architecture"}
