"""The marketplace: the curated catalog and the MCP registries' entries, searched and read as
`/api/marketplace/tools` does. Installing an entry is the installations family's `install_tool`."""

from typing import Annotated

from pydantic import Field

from app import composition
from app.auth.principal import Tier
from app.mcp.families import EntryId
from app.mcp.tools import TieredTool, reads, tool
from app.schemas.marketplace import MarketplaceToolDetail, MarketplaceToolList, MarketplaceToolView
from app.services.marketplace import entry_inputs, installability


def search_marketplace(
    query: Annotated[str | None, Field(max_length=200, description=(
        "words, all of which must appear in the name, title, description, tags or package names"))] = None,
    registry_type: Annotated[str | None, Field(max_length=20, description="only entries with a package of this "
                                                                          "registry type, e.g. npm or pypi")] = None,
    transport: Annotated[str | None, Field(max_length=20, description="only entries offering this transport, e.g. "
                                                                      "stdio or streamable-http")] = None,
    tags: Annotated[list[str], Field(max_length=10, description="only entries with every tag given")] = [],  # noqa: B006
    limit: Annotated[int, Field(ge=1, le=100, description="at most this many")] = 20,
    cursor: Annotated[str | None, Field(max_length=2000, description="`next_cursor` of the previous page")] = None,
) -> MarketplaceToolList:
    """The marketplace's MCP servers (berth's curated catalog and the MCP registries' entries), by
    name, with whether and how each can be installed (`install_kind`, or `not_installable` saying
    why not)."""
    marketplace = composition.services().marketplace
    page = marketplace.search(text=query, registry_type=registry_type, transport=transport, tags=tags, limit=limit,
                              cursor=cursor)
    views = []
    for entry in page.items:
        document = marketplace.document(entry)
        views.append(MarketplaceToolView.of(entry, document, *installability(document)))
    return MarketplaceToolList(tools=views, next_cursor=page.cursor)


def get_tool_details(entry_id: EntryId) -> MarketplaceToolDetail:
    """One marketplace entry in full: its versions, what installing it takes (`inputs`: each
    value's name, whether it is required or secret, its default and choices) and its server.json."""
    marketplace = composition.services().marketplace
    entry = marketplace.entry(entry_id)
    document = marketplace.document(entry)
    return MarketplaceToolDetail.detailed(entry, document, *installability(document), entry_inputs(document))


def tools() -> list[TieredTool]:
    return [
        tool(search_marketplace, tier=Tier.read, annotations=reads("Search the marketplace")),
        tool(get_tool_details, tier=Tier.read, annotations=reads("Show a marketplace entry")),
    ]
