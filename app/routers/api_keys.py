"""`/api/auth/keys`: API key management (control surface). Needs an admin key or a session."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import AdminUser
from app.schemas.accounts import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyView
from app.services import api_keys
from app.settings import get_settings

router = APIRouter(prefix="/api/auth/keys", tags=["api keys"])


@router.post("/generate", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def generate(principal: AdminUser, body: ApiKeyCreate) -> ApiKeyCreated:
    """Mint a key. The secret is in this response only; listings show its prefix."""
    secret, view = api_keys.generate(principal, body)
    return ApiKeyCreated(key=secret, api_key=view)


@router.get("", response_model=ApiKeyList)
def list_keys(
    principal: AdminUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> ApiKeyList:
    keys, next_cursor = api_keys.list_keys(principal, limit=min(limit, get_settings().page_size_max), cursor=cursor)
    return ApiKeyList(keys=keys, next_cursor=next_cursor)


@router.delete("/{key_id}", response_model=ApiKeyView)
def revoke(principal: AdminUser, key_id: str) -> ApiKeyView:
    """Revoke a key; it fails authentication from the next request on."""
    return api_keys.revoke(principal, key_id)
