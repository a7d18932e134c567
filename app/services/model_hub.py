"""The Hugging Face hub as the API sees it: search (`HfApi.list_models`) and what one revision of a
repo is (`HfApi.model_info`, plus one HEAD of a file to learn whether a credential may download a
gated repo), with every failure turned into an error a person can act on.

huggingface_hub is imported on first use, so only the model routes pay for it. The endpoint is the
settings' (`BERTH_HF_ENDPOINT`, else `HF_ENDPOINT`); the API's host credentials are never used:
a call carries the workspace's token or none. Every call is bounded by `hub_timeout_seconds`.
"""

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from app.contract.models import vllm_verdict
from app.domain.models import EngineVerdict, ModelFacts, SourceType
from app.errors import BadGateway, BerthError, Conflict, NotFound, Unprocessable
from app.settings import Settings

Result = TypeVar("Result")


class HubUnreachable(BadGateway):
    """The hub could not be asked (down, unreachable, too slow, or answering 5xx)."""


class ModelHub:
    def __init__(self, settings: Settings):
        self.settings = settings
        # Hub calls run here, bounded from the caller's side: huggingface_hub's own timeouts do not
        # cover a whole paginated listing, and a hub that hangs must not hold a request for long.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="hub")

    @property
    def endpoint(self) -> str:
        return self.settings.hf_endpoint.rstrip("/")

    def _bounded(self, call: Callable[[], Result], what: str) -> Result:
        future = self._pool.submit(call)
        try:
            return future.result(timeout=self.settings.hub_timeout_seconds)
        except concurrent.futures.TimeoutError:
            raise HubUnreachable(f"the model hub ({self.endpoint}) did not answer {what} within "
                                 f"{self.settings.hub_timeout_seconds:g} s") from None

    def search(self, query: str | None, task: str | None, limit: int) -> list[dict[str, Any]]:
        """Models matching `query` (and `task`), most downloaded first; HubUnreachable when the hub
        cannot be asked."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=False)

        def listing() -> list[Any]:
            return list(api.list_models(search=query or None, pipeline_tag=task or None, sort="downloads",
                                        limit=limit, full=True))

        try:
            found = self._bounded(listing, "a search")
        except BerthError:
            raise
        except Exception as error:
            raise self._failure(error, "the search", token=None) from None
        return [_search_item(info) for info in found]

    def facts(self, model: str, revision: str | None, token: str | None) -> ModelFacts:
        """What `revision` (default branch if None) of `model` is, and whether `token` (or no token)
        may download it. NotFound for a repo or revision the hub does not show; HubUnreachable."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=token or False)
        try:
            info = self._bounded(lambda: api.model_info(model, revision=revision, files_metadata=True,
                                                         timeout=self.settings.hub_timeout_seconds), "for the model")
        except BerthError:
            raise
        except Exception as error:
            raise self._failure(error, model, token=token, revision=revision) from None
        siblings = info.siblings or []
        paths = [sibling.rfilename for sibling in siblings]
        architecture, model_type = _architecture(info.config or {})
        gated, private = bool(info.gated), bool(info.private)
        access = "granted" if private else "open"
        if gated:
            access = self._gated_access(model, info.sha or revision or "main", paths, token)
        top_level = {sibling.rfilename: sibling.size or 0 for sibling in siblings if "/" not in sibling.rfilename}
        weights = [size for path, size in top_level.items() if path.endswith(".safetensors")] or \
            [size for path, size in top_level.items() if path.endswith(".bin")]
        verdict = vllm_verdict(architecture, model_type, paths)
        return ModelFacts(
            source_type=SourceType.huggingface, source_uri=f"hf://{info.id}", external_id=info.id,
            display_name=info.id.rsplit("/", 1)[-1], provider="huggingface", revision=revision or "main",
            commit=info.sha, task=info.pipeline_tag, library=info.library_name, license=_license(info),
            tags=list(info.tags or []), architecture=architecture, model_type=model_type,
            parameter_count=info.safetensors.total if info.safetensors else None,
            weight_bytes=sum(weights) if weights else None, gated=gated, private=private, access=access,
            engines={"vllm": EngineVerdict(servable=verdict["servable"], reason=verdict["reason"])})

    def needs_credential(self, model: str, revision: str | None) -> bool:
        """Whether pulling `model` takes a credential: it is gated, or the hub does not show it to
        anyone (private, or missing: the pull then says which). False when the hub cannot be asked."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        api = HfApi(endpoint=self.endpoint, token=False)
        try:
            info = self._bounded(lambda: api.model_info(model, revision=revision,
                                                         timeout=self.settings.hub_timeout_seconds), "for the model")
        except (GatedRepoError, RepositoryNotFoundError):
            return True
        except Exception:
            return False
        return bool(info.gated)

    def _gated_access(self, model: str, commit: str, paths: list[str], token: str | None) -> str:
        """A gated repo shows its metadata to anyone; only a file request tells whether a token may
        download it."""
        if token is None:
            return "needs_credential"
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import GatedRepoError

        probe = "config.json" if "config.json" in paths else (paths[0] if paths else "README.md")
        url = hf_hub_url(model, probe, revision=commit, endpoint=self.endpoint)
        try:
            self._bounded(lambda: get_hf_file_metadata(url, token=token, timeout=self.settings.hub_timeout_seconds,
                                                       endpoint=self.endpoint), "for a file")
        except GatedRepoError:
            return "denied"
        except BerthError:
            raise
        except Exception as error:
            raise self._failure(error, model, token=token) from None
        return "granted"

    def _failure(self, error: Exception, model: str, *, token: str | None, revision: str | None = None) -> BerthError:
        """A hub failure as berth's error, its message free of the token."""
        failure = _classify(error, model, revision, token is not None, self.endpoint)
        return type(failure)(failure.message.replace(token, "[token]")) if token else failure


def _classify(error: Exception, model: str, revision: str | None, has_token: bool, endpoint: str) -> BerthError:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):  # before RepositoryNotFoundError: it is a subclass
        return Conflict(f"{model} is gated and the hub refused even its metadata; store a Hugging Face credential"
                        " (POST /v1/cloud/providers) from an account granted access")
    if isinstance(error, RevisionNotFoundError):
        return NotFound(f"revision {revision!r} not found in {model}")
    if isinstance(error, RepositoryNotFoundError):
        if has_token:
            return NotFound(f"model {model} not found on the hub, or the workspace's Hugging Face credential cannot"
                            " see it (a private repo of another account)")
        return NotFound(f"model {model} not found on the hub; if it is private, store a Hugging Face credential"
                        " that can see it (POST /v1/cloud/providers)")
    if isinstance(error, HFValidationError):
        return Unprocessable(f"{model!r} is not a valid model id: use the form 'namespace/name'")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return Conflict("the hub refused the workspace's Hugging Face credential (401): it is invalid or"
                            " expired; store a new one (POST /v1/cloud/providers)")
        return HubUnreachable(f"the model hub ({endpoint}) answered {status} for {model}")
    return HubUnreachable(f"the model hub ({endpoint}) could not be reached: {type(error).__name__}")


def _search_item(info: Any) -> dict[str, Any]:
    return {"id": info.id, "author": info.author or (info.id.split("/")[0] if "/" in info.id else None),
            "task": info.pipeline_tag, "library": info.library_name, "downloads": info.downloads,
            "likes": info.likes, "tags": list(info.tags or []), "gated": bool(info.gated),
            "private": bool(info.private),
            "last_modified": info.last_modified.isoformat() if info.last_modified else None, "source": "hub"}


def _architecture(config: dict) -> tuple[str | None, str | None]:
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    # Diffusers repos have no config.json; the hub exposes their pipeline class instead.
    pipeline_class = (config.get("diffusers") or {}).get("_class_name")
    return (architectures[0] if architectures else model_type or pipeline_class), model_type


def _license(info: Any) -> str | None:
    if info.card_data is not None and getattr(info.card_data, "license", None):
        return info.card_data.license
    # Cards without front matter still carry the license the hub detected as a tag.
    return next((tag.removeprefix("license:") for tag in info.tags or [] if tag.startswith("license:")), None)
