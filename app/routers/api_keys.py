"""`/api/auth/keys`: API key management (control surface). Needs an admin key or a session."""

from fastapi import APIRouter, status

from app.schemas.accounts import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyView
from app.web.deps import AdminUser, Paging, ServicesDep

router = APIRouter(prefix="/api/auth/keys", tags=["api keys"])


@router.post("/generate", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def generate(principal: AdminUser, body: ApiKeyCreate, services: ServicesDep) -> ApiKeyCreated:
    """Mint a key. The secret is in this response only; listings show its prefix."""
    secret, key = services.api_keys.generate(principal, body.name, body.tier, body.expires_at)
    return ApiKeyCreated(key=secret, api_key=ApiKeyView.of(key))


@router.get("", response_model=ApiKeyList)
def list_keys(principal: AdminUser, services: ServicesDep, paging: Paging) -> ApiKeyList:
    page = services.api_keys.page(principal, limit=min(paging.limit, services.settings.page_size_max),
                                  cursor=paging.cursor)
    return ApiKeyList(keys=[ApiKeyView.of(key) for key in page.items], next_cursor=page.cursor)


@router.delete("/{key_id}", response_model=ApiKeyView)
def revoke(principal: AdminUser, key_id: str, services: ServicesDep) -> ApiKeyView:
    """Revoke a key; it fails authentication from the next request on."""
    return ApiKeyView.of(services.api_keys.revoke(principal, key_id))
