"""Bodies of `/api/marketplace` and `/api/registry`: entries as listed and in detail, a refresh's
report, and the install request."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.catalog import ServerDocument
from app.domain.installations import ConfigInput
from app.domain.marketplace import MarketplaceEntry, RegistryState


class InputView(BaseModel):
    """A value an installation of the entry takes (`berth install ID --set NAME=VALUE`)."""

    name: str
    kind: Literal["env", "argument", "header", "url"]
    description: str
    required: bool = Field(description="required, with no default to fall back on")
    secret: bool = Field(description="stored sealed, never shown again")
    default: str | None = None
    choices: list[str] = Field(default_factory=list)
    format: str = "string"

    @classmethod
    def of(cls, found: ConfigInput) -> "InputView":
        return cls(name=found.name, kind=found.kind, description=found.description, required=found.needed,
                   secret=found.secret, default=found.default, choices=list(found.choices), format=found.format)


class MarketplaceToolView(BaseModel):
    id: str = Field(description="the server's registry name, e.g. io.github.owner/server")
    title: str
    description: str
    version: str
    origin: str = Field(description="`curated`, or the registry it came from")
    status: str
    tags: list[str]
    registry_types: list[str]
    transports: list[str]
    per_user: bool = Field(description="each user installs it with their own account")
    needs_network: bool
    install_kind: Literal["package", "remote"] | None = Field(
        description="what an installation runs: a package in a sandbox, or calls to a remote server")
    not_installable: str | None = Field(None, description="why it cannot be installed, when it cannot")
    repository_url: str | None = None
    website_url: str | None = None

    @classmethod
    def of(cls, entry: MarketplaceEntry, document: ServerDocument, install_kind: Literal["package", "remote"] | None,
           not_installable: str | None) -> "MarketplaceToolView":
        return cls(
            id=entry.entry_id, title=document.display_name, description=document.description, version=entry.version,
            origin=entry.origin, status=entry.status, tags=document.berth.tags,
            registry_types=list(dict.fromkeys(package.registry_type for package in document.packages)),
            transports=list(dict.fromkeys([*(package.transport.type for package in document.packages),
                                           *(remote.type for remote in document.remotes)])),
            per_user=document.berth.per_user, needs_network=document.berth.needs_network, install_kind=install_kind,
            not_installable=not_installable, repository_url=document.repository.url if document.repository else None,
            website_url=document.website_url)


class MarketplaceToolDetail(MarketplaceToolView):
    versions: list[str] = Field(description="versions seen from its origin, newest first")
    inputs: list[InputView] = Field(description="what an installation takes (empty when not installable)")
    document: dict[str, Any] = Field(description="its server.json")

    @classmethod
    def detailed(cls, entry: MarketplaceEntry, document: ServerDocument,
                 install_kind: Literal["package", "remote"] | None, not_installable: str | None,
                 inputs: list[ConfigInput]) -> "MarketplaceToolDetail":
        summary = MarketplaceToolView.of(entry, document, install_kind, not_installable)
        return cls(**summary.model_dump(), versions=entry.versions, inputs=[InputView.of(found) for found in inputs],
                   document=entry.document)


class MarketplaceToolList(BaseModel):
    success: bool = True
    tools: list[MarketplaceToolView]
    next_cursor: str | None = None


class RegistryStateView(BaseModel):
    url: str
    attempted_at: str
    succeeded_at: str | None
    entries: int
    error: str | None

    @classmethod
    def of(cls, state: RegistryState) -> "RegistryStateView":
        return cls(url=state.url, attempted_at=state.attempted_at, succeeded_at=state.succeeded_at,
                   entries=state.entries, error=state.error)


class RegistryEntryView(BaseModel):
    id: str
    title: str
    description: str
    origin: str = Field(description="the registry it came from")
    version: str = Field(description="the latest version the registry lists")
    versions: list[str] = Field(description="every version berth has seen from it, newest first")
    status: str
    published_at: str | None
    updated_at: str | None
    stored_at: str | None

    @classmethod
    def of(cls, entry: MarketplaceEntry, document: ServerDocument) -> "RegistryEntryView":
        return cls(id=entry.entry_id, title=document.display_name, description=document.description,
                   origin=entry.origin, version=entry.version, versions=entry.versions, status=entry.status,
                   published_at=entry.published_at, updated_at=entry.updated_at, stored_at=entry.stored_at)


class RegistryEntryDetail(RegistryEntryView):
    document: dict[str, Any] = Field(description="its server.json, as the registry gave it")


class RegistryList(BaseModel):
    success: bool = True
    entries: list[RegistryEntryView]
    next_cursor: str | None = None
    registries: list[RegistryStateView] = Field(description="the configured registries' last refreshes")


class InvalidEntryView(BaseModel):
    name: str
    version: str
    problems: list[str]


class RegistryReportView(BaseModel):
    url: str
    ok: bool
    entries: int = Field(description="entries berth holds from it now")
    added: int
    updated: int
    removed: int
    pages: int
    invalid: list[InvalidEntryView] = Field(description="entries refused (the first few), with why")
    invalid_count: int
    error: str | None = Field(description="where and why its listing failed; what berth had from it was kept")


class RefreshResponse(BaseModel):
    success: bool = True
    entries: int = Field(description="entries the marketplace lists now, curated ones included")
    seconds: float
    failed: list[str] = Field(description="registries whose listing failed (what berth had from them is kept)")
    registries: list[RegistryReportView]


class InstallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, str] = Field(default_factory=dict, max_length=200,
                                   description="values by input name (see the entry's `inputs`)")
    kind: Literal["package", "remote"] | None = Field(
        None, description="insist on a package or a remote when the entry offers both (default: its package)")
