"""`/v1/catalog`: the curated MCP servers and models berth ships (runtime spec)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.catalog import curated_catalog
from app.schemas.models import CatalogView
from app.web.openapi import errors

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


@router.get("", response_model=CatalogView, openapi_extra={"security": []}, responses=errors(422))
def catalog(kind: Annotated[Literal["mcp_server", "model"] | None, Query()] = None) -> CatalogView:
    """Public, like the data file it is read from. Each entry's `document` is its own record: a
    server.json for an MCP server, the curated facts of a model (its Hugging Face repo id, task,
    license, size)."""
    entries = [entry for entry in curated_catalog() if kind in (None, entry.kind)]
    return CatalogView(items=[entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in entries])
