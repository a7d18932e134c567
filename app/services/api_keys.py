"""API keys: minted with a tier and optional expiry, shown once, stored as a digest."""

from datetime import timezone

from app import clock
from app.auth.principal import Principal
from app.errors import BadRequest, ConditionFailed, NotFound
from app.ids import hash_secret, new_id, new_secret, secret_prefix
from app.schemas.accounts import ApiKeyCreate, ApiKeyView
from app.services.activity import audit
from app.store import get_store
from app.store.table import Write


def _view(item: dict) -> ApiKeyView:
    return ApiKeyView(
        id=item["key_id"], name=item["name"], tier=item["tier"], prefix=item["prefix"],
        created_at=item["created_at"], expires_at=item.get("expires_at"), revoked_at=item.get("revoked_at"),
        created_by=item.get("created_by", ""),
    )


def generate(principal: Principal, request: ApiKeyCreate) -> tuple[str, ApiKeyView]:
    store = get_store()
    expires_epoch = None
    if request.expires_at is not None:
        moment = request.expires_at if request.expires_at.tzinfo else request.expires_at.replace(tzinfo=timezone.utc)
        expires_epoch = int(moment.timestamp())
        if expires_epoch <= clock.now():
            raise BadRequest("expires_at must be in the future")
    key_id, secret = new_id("key"), new_secret("bak")
    digest = hash_secret(secret)
    record = store.accounts.api_key_item(
        principal.workspace_id, key_id, name=request.name, tier=request.tier, prefix=secret_prefix(secret),
        digest=digest, created_at=clock.iso(), created_by=principal.user_id or principal.subject_id,
        expires_at=clock.iso(expires_epoch) if expires_epoch else None,
    )
    credential = store.credentials.item(
        digest, "api_key", principal.workspace_id, key_id, tier=request.tier, expires_epoch=expires_epoch,
        attributes={"user_id": principal.user_id, "operator": principal.operator},
    )
    store.table.transact([Write.put(record, must_not_exist=True), store.credentials.put_write(credential)])
    audit(principal.workspace_id, "api_key.create", actor=principal.subject_id, target=key_id,
          detail={"name": request.name, "tier": request.tier})
    return secret, _view(record)


def list_keys(principal: Principal, *, limit: int, cursor: str | None) -> tuple[list[ApiKeyView], str | None]:
    page = get_store().accounts.list_api_keys(principal.workspace_id, limit=limit, cursor=cursor)
    return [_view(item) for item in page.items], page.cursor


def revoke(principal: Principal, key_id: str) -> ApiKeyView:
    store = get_store()
    record = store.accounts.get_api_key(principal.workspace_id, key_id)
    if record is None:
        raise NotFound(f"no API key {key_id}")
    if record.get("revoked_at"):
        return _view(record)
    revoked_at = clock.iso()
    try:
        store.table.transact([
            store.accounts.revoke_api_key_write(principal.workspace_id, key_id, revoked_at),
            store.credentials.delete_write(record["digest"]),
        ])
    except ConditionFailed:
        pass  # revoked concurrently: the outcome is the same
    store.credentials.forget(record["digest"])
    audit(principal.workspace_id, "api_key.revoke", actor=principal.subject_id, target=key_id)
    return _view({**record, "revoked_at": revoked_at})
