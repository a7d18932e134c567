"""`/api/marketplace` and `/api/registry`: the catalog of MCP servers (curated and from MCP
registries), searching it, refreshing it, and installing an entry.

Entry ids are registry names, which hold a `/` (`io.github.owner/server`): the routes take the
rest of the path as the id, so the `/` may be sent as it is or encoded (`%2F`)."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, status
from starlette.concurrency import run_in_threadpool

from app.auth.principal import USER_ID_PATTERN
from app.schemas.installations import InstallationView
from app.schemas.marketplace import (
    InstallRequest,
    MarketplaceToolDetail,
    MarketplaceToolList,
    MarketplaceToolView,
    RefreshResponse,
    RegistryEntryDetail,
    RegistryEntryView,
    RegistryList,
    RegistryReportView,
    RegistryStateView,
)
from app.services.installations import acting_user
from app.services.marketplace import entry_inputs, installability
from app.web.deps import AdminUser, ServicesDep, User
from app.web.openapi import errors

router = APIRouter(tags=["marketplace"])

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2000)]
EntryId = Annotated[str, Path(max_length=200, description="a registry name, e.g. io.github.owner/server")]
UserHeader = Annotated[str | None, Header(alias="X-User-Id", max_length=128, pattern=USER_ID_PATTERN,
                                          description="the user a per-user entry is installed for")]


@router.get("/api/marketplace/tools", response_model=MarketplaceToolList, responses=errors(400, 401, 403, 422))
def search_tools(principal: User, services: ServicesDep,
                 q: Annotated[str | None, Query(max_length=200, description="words, all of which must appear")] = None,
                 registry_type: Annotated[str | None, Query(max_length=20, examples=["npm", "pypi"])] = None,
                 transport: Annotated[str | None, Query(max_length=20, examples=["stdio", "streamable-http"])] = None,
                 tag: Annotated[list[str] | None, Query(max_length=10, description="every tag given")] = None,
                 limit: Limit = 20, cursor: Cursor = None) -> MarketplaceToolList:
    """The curated catalog and the registries' entries, by name."""
    marketplace = services.marketplace
    page = marketplace.search(text=q, registry_type=registry_type, transport=transport, tags=tag or [], limit=limit,
                              cursor=cursor)
    views = []
    for entry in page.items:
        document = marketplace.document(entry)
        views.append(MarketplaceToolView.of(entry, document, *installability(document)))
    return MarketplaceToolList(tools=views, next_cursor=page.cursor)


@router.post("/api/marketplace/tools/{entry_id:path}/install", status_code=status.HTTP_201_CREATED,
             response_model=InstallationView, responses=errors(400, 401, 403, 404, 409, 413, 422))
def install_tool(principal: User, entry_id: EntryId, body: InstallRequest, services: ServicesDep,
                 x_user_id: UserHeader = None) -> InstallationView:
    """Install an entry with its configuration (checked against what it declares; secret values
    sealed): for the workspace, or for the calling user when the entry is per-user. `next` and
    `state` say what comes next."""
    installation = services.installations.install(principal, entry_id, dict(body.config), kind=body.kind,
                                                   user_id=acting_user(principal, x_user_id))
    return InstallationView.of(installation)


@router.get("/api/marketplace/tools/{entry_id:path}", response_model=MarketplaceToolDetail,
            responses=errors(401, 403, 404))
def read_tool(principal: User, entry_id: EntryId, services: ServicesDep) -> MarketplaceToolDetail:
    """One entry: its versions, what an installation takes, and its server.json."""
    marketplace = services.marketplace
    entry = marketplace.entry(entry_id)
    document = marketplace.document(entry)
    return MarketplaceToolDetail.detailed(entry, document, *installability(document), entry_inputs(document))


@router.post("/api/marketplace/refresh", response_model=RefreshResponse, responses=errors(401, 403, 409))
async def refresh_marketplace(principal: AdminUser, services: ServicesDep) -> RefreshResponse:
    """Read the configured MCP registries (`BERTH_MCP_REGISTRY_URLS`) and store what changed. A
    registry that fails keeps what berth had from it; `failed` and its `error` say where."""
    budget = services.settings.marketplace_refresh_seconds
    report = await run_in_threadpool(services.marketplace.refresh, budget, actor=principal.subject_id)
    return RefreshResponse(entries=report.entries, seconds=report.seconds, failed=report.failed,
                           registries=[RegistryReportView(**asdict(registry)) for registry in report.registries])


@router.get("/api/registry", response_model=RegistryList, responses=errors(400, 401, 403, 422))
def list_registry(principal: User, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None,
                  origin: Annotated[str | None, Query(max_length=500, description="one registry's only")] = None
                  ) -> RegistryList:
    """The definitions stored from MCP registries, with their origin and versions."""
    marketplace = services.marketplace
    page = marketplace.registry_page(limit=limit, cursor=cursor, origin=origin)
    return RegistryList(entries=[RegistryEntryView.of(entry, marketplace.document(entry)) for entry in page.items],
                        next_cursor=page.cursor,
                        registries=[RegistryStateView.of(state) for state in marketplace.registry_states()])


@router.get("/api/registry/{entry_id:path}", response_model=RegistryEntryDetail, responses=errors(401, 403, 404))
def read_registry_entry(principal: User, entry_id: EntryId, services: ServicesDep) -> RegistryEntryDetail:
    marketplace = services.marketplace
    entry = marketplace.registry_entry(entry_id)
    view = RegistryEntryView.of(entry, marketplace.document(entry))
    return RegistryEntryDetail(**view.model_dump(), document=entry.document)
