"""`/v1/cloud/providers`: a workspace's BYO provider credentials (runtime spec). Tokens go in once
and never come out: only a hint (`hf_...abcd`) is shown."""

from fastapi import APIRouter, status

from app.domain.models import Provider
from app.schemas.accounts import OkResponse
from app.schemas.models import ProviderCreate, ProviderCreated, ProviderList, ProviderView
from app.web.deps import ServicesDep, User
from app.web.openapi import errors

router = APIRouter(prefix="/v1/cloud/providers", tags=["models"])


@router.get("", response_model=ProviderList, responses=errors(401, 403))
def list_providers(principal: User, services: ServicesDep) -> ProviderList:
    """The workspace's provider credentials, hints only."""
    return ProviderList(providers=[ProviderView.of(credential) for credential in services.providers.list(principal)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProviderCreated, responses=errors(401, 403, 422))
def store_provider(principal: User, body: ProviderCreate, services: ServicesDep) -> ProviderCreated:
    """Store a token (encrypted with the KMS key), replacing the workspace's token for that provider.
    A Hugging Face token opens gated and private repos in resolve, and goes (sealed for one runtime)
    with the pulls that need it."""
    return ProviderCreated(provider=ProviderView.of(services.providers.put(principal, body.provider, body.token,
                                                                           body.name)))


@router.delete("/{provider}", response_model=OkResponse, responses=errors(401, 403, 404, 422))
def delete_provider(principal: User, provider: Provider, services: ServicesDep) -> OkResponse:
    services.providers.delete(principal, provider)
    return OkResponse()
