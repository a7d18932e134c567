"""Routes of the marketplace: `/api/marketplace/*` (search, an entry, install, refresh) and
`/api/registry*` (what the MCP registries offered)."""

from typing import Any, Literal, TypedDict

from berth_cli.client.http import Http, segment
from berth_cli.client.installations import Installation


class InputSpec(TypedDict):
    name: str
    kind: str
    description: str
    required: bool
    secret: bool
    default: str | None
    choices: list[str]
    format: str


class MarketplaceTool(TypedDict):
    id: str
    title: str
    description: str
    version: str
    origin: str
    status: str
    tags: list[str]
    registry_types: list[str]
    transports: list[str]
    per_user: bool
    needs_network: bool
    install_kind: Literal["package", "remote"] | None
    not_installable: str | None
    repository_url: str | None
    website_url: str | None


class MarketplaceToolDetail(MarketplaceTool):
    versions: list[str]
    inputs: list[InputSpec]
    document: dict[str, Any]


class MarketplaceToolPage(TypedDict):
    success: bool
    tools: list[MarketplaceTool]
    next_cursor: str | None


class RegistryReport(TypedDict):
    url: str
    ok: bool
    entries: int
    added: int
    updated: int
    removed: int
    pages: int
    invalid: list[dict[str, Any]]
    invalid_count: int
    error: str | None


class RefreshResult(TypedDict):
    success: bool
    entries: int
    seconds: float
    failed: list[str]
    registries: list[RegistryReport]


class MarketplaceApi:
    def __init__(self, http: Http):
        self._http = http

    def search(self, text: str | None = None, *, registry_type: str | None = None, transport: str | None = None,
               tags: list[str] | None = None, limit: int | None = None, cursor: str | None = None
               ) -> MarketplaceToolPage:
        return self._http.request("GET", "/api/marketplace/tools", params={
            "q": text, "registry_type": registry_type, "transport": transport, "tag": tags or None, "limit": limit,
            "cursor": cursor})

    def get(self, entry_id: str) -> MarketplaceToolDetail:
        return self._http.request("GET", f"/api/marketplace/tools/{segment(entry_id)}")

    def install(self, entry_id: str, config: dict[str, str], *, kind: str | None = None) -> Installation:
        body: dict[str, Any] = {"config": config, **({"kind": kind} if kind else {})}
        return self._http.request("POST", f"/api/marketplace/tools/{segment(entry_id)}/install", json=body)

    def refresh(self) -> RefreshResult:
        # A refresh reads whole registries: the API allows it up to API Gateway's 29 s.
        return self._http.request("POST", "/api/marketplace/refresh", timeout=60)
