"""`model.inspect`: read a model's hub metadata and preview its serving profile.

Only the hub's metadata endpoint is called (no file download), so a gated repo still gets a
preview: the hub publishes the metadata of gated repos, only their files need access.
"""

import asyncio
import os
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.contract.messages import JobType
from app.contract.models import vllm_verdict
from workers.executors.base import ExecutorError, JobContext

HubTransportError: type[Exception]
try:  # huggingface_hub 2.x speaks HTTP through httpx2 and lets its transport errors through; 1.x used httpx
    from httpx2 import TransportError as HubTransportError
except ImportError:
    from httpx import TransportError as HubTransportError

JOB_TYPE = JobType.model_inspect.value
HUB_TIMEOUT_SECONDS = 30.0

class InspectPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    model: str = Field(min_length=1, max_length=200)
    revision: str | None = Field(default=None, min_length=1, max_length=200)


def inspect_model(
    model: str, revision: str | None = None, *, endpoint: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """Profile preview of `model` at `revision` (default branch if None), read from the hub.

    `endpoint` defaults to HF_ENDPOINT as set now, not as huggingface_hub saw it at import.
    Raises ExecutorError with a message a user can act on.
    """
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    at_revision = f" at revision {revision!r}" if revision else ""
    try:
        info = api.model_info(model, revision=revision, files_metadata=True, timeout=HUB_TIMEOUT_SECONDS)
    except GatedRepoError as error:  # before RepositoryNotFoundError: it is a subclass
        raise ExecutorError(
            f"model {model} is gated and the hub refused even its metadata; request access on the hub"
            " and give the runtime a token (HF_TOKEN) from an account that was granted access"
        ) from error
    except RevisionNotFoundError as error:
        raise ExecutorError(f"revision {revision!r} not found for model {model}") from error
    except RepositoryNotFoundError as error:
        raise ExecutorError(
            f"model {model} not found; check the repo id, or provide a token if the repo is private"
        ) from error
    except HFValidationError as error:
        raise ExecutorError(f"{model!r} is not a valid model id: use the form 'namespace/name'") from error
    except HubTransportError as error:
        raise ExecutorError(f"model hub unreachable ({api.endpoint}): {error}") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise ExecutorError(f"model hub error {status} while reading {model}{at_revision}") from error

    config = info.config or {}
    architecture, model_type = _architecture(config)
    siblings = info.siblings or []
    files = [{"path": sibling.rfilename, "size": sibling.size} for sibling in siblings]
    gated_mode = info.gated or None  # the hub says False, "auto" or "manual"
    return {
        "model": info.id,
        "revision": info.sha,
        "architecture": architecture,
        "model_type": model_type,
        "parameter_count": info.safetensors.total if info.safetensors else None,
        "files": files,
        "total_bytes": sum(file["size"] or 0 for file in files),
        "license": _license(info),
        "gated": gated_mode is not None,
        "gated_mode": gated_mode,
        "task": info.pipeline_tag,
        "library": info.library_name,
        "tags": list(info.tags or []),
        "vllm": vllm_verdict(architecture, model_type, [sibling.rfilename for sibling in siblings]),
    }


def _architecture(config: dict) -> tuple[str | None, str | None]:
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    # Diffusers repos have no config.json; the hub exposes their pipeline class instead.
    pipeline_class = (config.get("diffusers") or {}).get("_class_name")
    return (architectures[0] if architectures else model_type or pipeline_class), model_type


def _license(info) -> str | None:
    if info.card_data is not None and info.card_data.license:
        return info.card_data.license
    # Cards without front matter still carry the license the hub detected as a tag.
    return next((tag.removeprefix("license:") for tag in info.tags or [] if tag.startswith("license:")), None)


async def execute(ctx: JobContext) -> dict[str, Any]:
    try:
        payload = InspectPayload.model_validate(ctx.payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in error.errors())
        raise ExecutorError(f"invalid model.inspect payload: {problems}") from error
    if ctx.cancelled.is_set():
        return {"cancelled": True}

    await ctx.emit("resolve", "running", f"reading {payload.model} from the model hub")
    inspection = asyncio.ensure_future(asyncio.to_thread(inspect_model, payload.model, payload.revision))
    cancellation = asyncio.ensure_future(ctx.cancelled.wait())
    await asyncio.wait({inspection, cancellation}, return_when=asyncio.FIRST_COMPLETED)
    cancellation.cancel()
    if not inspection.done():
        # The hub call cannot be interrupted; its thread ends on its own within HUB_TIMEOUT_SECONDS.
        # Retrieve its outcome so a late failure is not logged as "exception never retrieved".
        inspection.add_done_callback(lambda task: task.cancelled() or task.exception())
        return {"cancelled": True}
    try:
        profile = inspection.result()
    except ExecutorError as error:
        await ctx.emit("resolve", "error", str(error))
        raise

    summary = f"{profile['model']}@{profile['revision'][:12]}: {profile['architecture'] or 'unknown architecture'}"
    await ctx.emit("resolve", "ok", summary, {"revision": profile["revision"], "vllm": profile["vllm"]})
    return profile


EXECUTOR = execute
EXECUTORS = {JOB_TYPE: execute}
