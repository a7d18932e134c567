"""The whole curated catalog as `/v1/catalog` lists it: MCP servers and models, as entries."""

import functools

from app.catalog.models import ModelDocument, curated_model_documents
from app.catalog.servers import CatalogEntry, curated_servers


def model_entry(document: ModelDocument) -> CatalogEntry:
    return CatalogEntry(kind="model", id=document.id, title=document.title, description=document.description,
                        version="", tags=document.tags, document=document)


@functools.cache
def curated_models() -> tuple[CatalogEntry, ...]:
    return tuple(model_entry(document) for document in curated_model_documents())


def curated_catalog() -> tuple[CatalogEntry, ...]:
    """Servers first, then models, each in the order the repo keeps them."""
    return curated_servers() + curated_models()
