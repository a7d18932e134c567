"""The curated catalog: `server.json` documents of MCP servers shipped in `servers/`, their
schema (`server.schema.json`), the curated models (`models.json`), and typed loading (pure: files
in, records out, no AWS).

`CatalogEntry` is what `/v1/catalog` and the marketplace list, of kind `mcp_server` or `model`."""

from app.catalog.listing import curated_catalog, curated_models
from app.catalog.models import ModelDocument, curated_model_documents
from app.catalog.servers import (
    CatalogEntry,
    Remote,
    ServerDocument,
    curated_servers,
    load_documents,
    server_entry,
    server_json_errors,
)

__all__ = [
    "CatalogEntry",
    "ModelDocument",
    "curated_catalog",
    "curated_model_documents",
    "curated_models",
    "Remote",
    "ServerDocument",
    "curated_servers",
    "load_documents",
    "server_entry",
    "server_json_errors",
]
