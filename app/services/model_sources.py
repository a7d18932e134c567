"""Where models come from: search (the hub, or the curated catalog when the hub cannot be reached)
and resolving a source into the facts a profile is made of.

Sources: a Hugging Face repo (resolved live, with the workspace's credential when it has one), a
directory on a runtime host (`local_path`, checked by the runtime when attached), an S3 prefix
(listed and its config read by the API) and an existing OpenAI-compatible server (asked what it
serves).
"""

import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from app.aws import AwsClients
from app.catalog import curated_model_documents
from app.contract.models import REPO_ID_PATTERN, vllm_verdict
from app.domain.models import EngineVerdict, ModelFacts, Provider, SourceType
from app.errors import BadGateway, BerthError, NotFound, Unprocessable
from app.services.external_endpoints import ExternalEndpoints
from app.services.model_hub import ModelHub
from app.services.providers import ProviderCredentials

S3_MAX_KEYS = 1000
S3_CONFIG_MAX_BYTES = 1_048_576
_HF_URL_PREFIXES = ("hf://", "https://huggingface.co/", "http://huggingface.co/")


@dataclass(frozen=True)
class SourceRequest:
    """A source to resolve, as the resolve route (or a profile import) names it."""

    source_type: SourceType
    model: str | None = None  # a repo id, or the model an external endpoint serves
    source_uri: str | None = None  # hf://org/name, s3://bucket/prefix, or an endpoint's base URL
    path: str | None = None  # local_path
    revision: str | None = None
    api_key: str | None = None  # an external endpoint's, to ask it (never stored by resolving)


@dataclass(frozen=True)
class SearchResult:
    live: bool
    items: list[dict[str, Any]]
    reason: str = ""  # why the hub was not searched


class ModelSources:
    def __init__(self, hub: ModelHub, providers: ProviderCredentials, endpoints: ExternalEndpoints,
                 aws: AwsClients):
        self.hub = hub
        self.providers = providers
        self.endpoints = endpoints
        self.aws = aws

    # --- search ----------------------------------------------------------------------------------

    def search(self, query: str | None, task: str | None, limit: int) -> SearchResult:
        """The hub's models, most downloaded first; the curated models when the hub cannot be asked."""
        try:
            return SearchResult(live=True, items=self.hub.search(query, task, limit))
        except BerthError as failure:  # the hub down, too slow, or refusing: never the caller's problem here
            return SearchResult(live=False, items=curated_matches(query, task, limit), reason=failure.message)

    # --- resolve ---------------------------------------------------------------------------------

    def resolve(self, workspace_id: str, source: SourceRequest, *, ask_endpoint: bool = True) -> ModelFacts:
        """What `source` is. An external endpoint is asked what it serves only with `ask_endpoint` (it
        may need a key, which only attaching stores)."""
        if source.source_type is SourceType.huggingface:
            repo = hub_repo_id(source.model or source.source_uri)
            token = self.providers.token(workspace_id, Provider.huggingface)
            return self.hub.facts(repo, source.revision, token)
        if source.source_type is SourceType.local_path:
            return local_path_facts(source.path or source.source_uri)
        if source.source_type is SourceType.s3:
            return self._s3_facts(source.source_uri or "")
        return self._endpoint_facts(source, ask_endpoint)

    def _endpoint_facts(self, source: SourceRequest, ask: bool) -> ModelFacts:
        base_url = self.endpoints.check_url(source.source_uri or "")
        model = source.model
        if not ask:
            if not model:
                raise Unprocessable("name the model the endpoint serves (`external_id`)")
            return ModelFacts(source_type=SourceType.openai_compatible, source_uri=base_url, external_id=model,
                              display_name=model, provider="openai_compatible", access="unknown",
                              engines={"external": EngineVerdict(servable=None, reason=f"{base_url} is asked when"
                                                                                       " it is attached")})
        served = self.endpoints.served_models(base_url, source.api_key)
        if model is None:
            if len(served) != 1:
                raise Unprocessable(f"name the model to use (`model`): {base_url} serves {', '.join(served) or 'none'}")
            model = served[0]
        if model not in served:
            raise NotFound(f"{base_url} does not serve {model!r}; it serves {', '.join(served) or 'nothing'}")
        return ModelFacts(source_type=SourceType.openai_compatible, source_uri=base_url, external_id=model,
                          display_name=model, provider="openai_compatible", access="unknown",
                          engines={"external": EngineVerdict(servable=True, reason=f"{base_url} serves {model}")})

    def _s3_facts(self, uri: str) -> ModelFacts:
        bucket, prefix = s3_location(uri)
        s3 = self.aws.client("s3")
        try:
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=S3_MAX_KEYS)
            sizes = {entry["Key"][len(prefix):]: entry["Size"] for entry in listing.get("Contents", [])}
            config = {}
            if "config.json" in sizes and sizes["config.json"] <= S3_CONFIG_MAX_BYTES:
                config = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "config.json")["Body"].read())
        except ValueError:
            raise BadGateway(f"s3://{bucket}/{prefix}config.json is not JSON") from None
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
            if code in ("NoSuchBucket", "NoSuchKey"):
                raise NotFound(f"s3://{bucket}/{prefix} does not exist") from None
            raise BadGateway(f"berth could not read s3://{bucket}/{prefix} ({code}); the API needs s3:ListBucket and"
                             " s3:GetObject there (template parameter ModelSourceBucketArns)") from None
        if not sizes:
            raise NotFound(f"s3://{bucket}/{prefix} holds no files")
        architectures = config.get("architectures") or []
        architecture = architectures[0] if architectures else config.get("model_type")
        verdict = vllm_verdict(architecture, config.get("model_type"), list(sizes))
        weights = [size for key, size in sizes.items() if "/" not in key and key.endswith(".safetensors")] or \
            [size for key, size in sizes.items() if "/" not in key and key.endswith(".bin")]
        reason = verdict["reason"] + ("; a runtime serves it from a mounted copy (attach it as local_path)"
                                      if verdict["servable"] else "")
        return ModelFacts(source_type=SourceType.s3, source_uri=f"s3://{bucket}/{prefix}", external_id=uri,
                          display_name=prefix.rstrip("/").rsplit("/", 1)[-1] or bucket, provider="s3",
                          architecture=architecture, model_type=config.get("model_type"),
                          weight_bytes=sum(weights) if weights else None, access="unknown",
                          engines={"vllm": EngineVerdict(servable=verdict["servable"], reason=reason)})


def hub_repo_id(value: str | None) -> str:
    """A repo id from `org/name`, `hf://org/name` or a huggingface.co URL."""
    repo = (value or "").strip()
    for prefix in _HF_URL_PREFIXES:
        if repo.startswith(prefix):
            repo = repo.removeprefix(prefix).strip("/")
    if not repo or not re.match(REPO_ID_PATTERN, repo):
        raise Unprocessable("name a Hugging Face repo as `externalId` or `model` (namespace/name)")
    return repo


def local_path_facts(path: str | None) -> ModelFacts:
    path = (path or "").removeprefix("file://")
    if not path or not path.startswith("/") or "\0" in path:
        raise Unprocessable("a local_path source is an absolute directory on the runtime host (`path`)")
    clean = path.rstrip("/") or "/"
    return ModelFacts(source_type=SourceType.local_path, source_uri=f"file://{clean}", external_id=clean,
                      display_name=clean.rsplit("/", 1)[-1] or clean, provider="local", access="unknown",
                      engines={"vllm": EngineVerdict(servable=None, reason="the runtime checks the directory when it"
                                                                           " is attached (mount_volume)")})


def s3_location(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri.strip())
    if parts.scheme != "s3" or not parts.netloc:
        raise Unprocessable("an S3 source is s3://bucket/prefix (`sourceUri`)")
    prefix = parts.path.lstrip("/")
    return parts.netloc, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def curated_matches(query: str | None, task: str | None, limit: int) -> list[dict[str, Any]]:
    """Curated models whose id, title, description or tags contain `query`, in search-item form."""
    needle = (query or "").lower()
    items = []
    for document in curated_model_documents():
        text = " ".join([document.id, document.title, document.description, *document.tags]).lower()
        if needle in text and (not task or document.task == task):
            items.append({"id": document.id, "author": document.id.split("/")[0], "task": document.task,
                          "library": document.library, "downloads": None, "likes": None,
                          "tags": list(document.tags), "gated": document.gated, "private": False,
                          "last_modified": None, "source": "curated", "title": document.title,
                          "description": document.description, "parameters": document.parameters,
                          "license": document.license})
    return items[:limit]


def with_overrides(facts: ModelFacts, **given: Any) -> ModelFacts:
    """Facts with the display fields a person gave (a name, tags, ...) in place of the resolved ones."""
    return replace(facts, **{name: value for name, value in given.items() if value not in (None, "", [])})
