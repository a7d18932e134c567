"""`/v1/model-sources`, `/v1/model-profiles`, `/v1/model-installations` (runtime spec): find a
model, make it a profile, attach it to a runtime, watch and remove its installations."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.domain.models import SourceType
from app.schemas.models import (
    AttachRequest,
    AttachResponse,
    InstallationList,
    InstallationRead,
    InstallationRemoved,
    InstallationView,
    ProfileCreated,
    ProfileImport,
    ProfileList,
    ProfilePreview,
    ProfileView,
    ResolveRequest,
    SearchResponse,
)
from app.services.model_installations import AttachRequest as Attach
from app.services.model_sources import SourceRequest
from app.web.deps import ServicesDep, User
from app.web.openapi import errors

router = APIRouter(tags=["models"])


@router.get("/v1/model-sources/huggingface/search", response_model=SearchResponse, openapi_extra={"security": []},
            responses=errors(422))
def search_models(
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=200, description="words in the repo id")] = None,
    task: Annotated[str | None, Query(max_length=100, description="a pipeline tag, e.g. text-generation")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchResponse:
    """Hugging Face models, most downloaded first (a server-side proxy of the hub's search). When the
    hub cannot be reached: `live: false` and the curated models that match."""
    found = services.model_sources.search(q, task, limit)
    return SearchResponse(live=found.live, items=found.items, reason=found.reason or None)


@router.post("/v1/model-sources/resolve", response_model=ProfilePreview, responses=errors(401, 403, 404, 409, 422, 502))
def resolve_source(principal: User, body: ResolveRequest, services: ServicesDep) -> ProfilePreview:
    """A source as a profile preview: what it is, whether the workspace can download it and whether
    each serving engine can serve it (and if not, why). 502 when the source could not be asked."""
    facts = services.model_profiles.preview(principal, _source(body))
    return ProfilePreview.of(facts, facts.own_status)


@router.get("/v1/model-profiles", response_model=ProfileList, responses=errors(401, 403))
def list_profiles(principal: User, services: ServicesDep) -> ProfileList:
    return ProfileList(profiles=[ProfileView.of_profile(found.profile, found.status)
                                 for found in services.model_profiles.list(principal)])


@router.post("/v1/model-profiles", status_code=status.HTTP_201_CREATED, response_model=ProfileCreated,
             responses=errors(401, 403, 404, 409, 422, 502))
def create_profile(principal: User, body: ProfileImport, services: ServicesDep) -> ProfileCreated:
    """Import a model as a profile. Its source is resolved on the server: the pinned commit, gated or
    private, and what can serve it are the hub's word; names and tags given here are kept."""
    source = SourceRequest(source_type=body.source_type, model=body.external_id, source_uri=body.source_uri,
                           path=body.external_id if body.source_type is SourceType.local_path else None,
                           revision=body.revision)
    overrides = {"display_name": body.display_name, "task": body.task, "library": body.library,
                 "license": body.license, "tags": body.tags}
    created = services.model_profiles.create(principal, source, overrides=overrides, metadata=body.metadata)
    return ProfileCreated(profile=ProfileView.of_profile(created.profile, created.status))


@router.get("/v1/model-profiles/{profile_id}", response_model=ProfileCreated, responses=errors(401, 403, 404))
def read_profile(principal: User, profile_id: str, services: ServicesDep) -> ProfileCreated:
    found = services.model_profiles.with_status(principal, profile_id)
    return ProfileCreated(profile=ProfileView.of_profile(found.profile, found.status))


@router.post("/v1/model-profiles/{id}/attach", status_code=status.HTTP_202_ACCEPTED, response_model=AttachResponse,
             responses=errors(401, 403, 404, 409, 422, 429, 502))
def attach_profile(principal: User, id: str, body: AttachRequest, services: ServicesDep) -> AttachResponse:
    """Install the profile on a runtime: a `model.attach` job pulls, verifies and serves it (follow
    `events_url`); 409 says why a runtime cannot. `installMode: external_endpoint` registers the
    profile's OpenAI-compatible server instead (`runtimeId: external`, no job)."""
    profile = services.model_profiles.get(principal, id)
    attach = Attach(runtime_id=body.runtime_id, install_mode=body.install_mode, serving_engine=body.serving_engine,
                    engine=body.engine_settings(), served_model_name=body.served_model_name, api_key=body.api_key)
    return AttachResponse.of(services.model_installations.attach(principal, profile, attach))


@router.get("/v1/model-installations", response_model=InstallationList, responses=errors(401, 403, 422))
def list_installations(
    principal: User,
    services: ServicesDep,
    profile_id: Annotated[str | None, Query(max_length=100)] = None,
    runtime_id: Annotated[str | None, Query(max_length=100)] = None,
) -> InstallationList:
    """Newest first, each with its live status and progress (0-100)."""
    found = services.model_installations.list(principal, profile_id=profile_id, runtime_id=runtime_id)
    return InstallationList(installations=[InstallationView.of(installation) for installation in found])


@router.get("/v1/model-installations/{installation_id}", response_model=InstallationRead,
            responses=errors(401, 403, 404))
def read_installation(principal: User, installation_id: str, services: ServicesDep) -> InstallationRead:
    return InstallationRead(installation=InstallationView.of(services.model_installations.get(principal,
                                                                                             installation_id)))


@router.delete("/v1/model-installations/{installation_id}", response_model=InstallationRemoved,
               responses=errors(401, 403, 404))
def delete_installation(principal: User, installation_id: str, services: ServicesDep) -> InstallationRemoved:
    """Stop serving it (its job is cancelled and the engine stops) and forget it; its revision is
    freed from the runtime's cache unless another installation there uses it."""
    removal = services.model_installations.delete(principal, installation_id)
    return InstallationRemoved(installation_id=installation_id, job_status=removal.job_status,
                               evicted=removal.evicted, freed_bytes=removal.freed_bytes, reason=removal.reason)


def _source(body: ResolveRequest) -> SourceRequest:
    return SourceRequest(source_type=body.source_type, model=body.external_id or body.model,
                         source_uri=body.source_uri, path=body.path, revision=body.branch, api_key=body.api_key)
