"""The curated catalog: `server.json` documents of MCP servers shipped in `servers/`, their
schema (`server.schema.json`), and typed loading (pure: files in, records out, no AWS).

`CatalogEntry` is what `/v1/catalog` and the marketplace list; its `kind` leaves room for the
models list beside the servers."""

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
    "Remote",
    "ServerDocument",
    "curated_servers",
    "load_documents",
    "server_entry",
    "server_json_errors",
]
