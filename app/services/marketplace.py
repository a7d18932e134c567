"""The marketplace: the curated catalog and the MCP registries' entries, searched and read, and
refreshed from the registries in `BERTH_MCP_REGISTRY_URLS` (by a person through the API, or on a
schedule by `functions/marketplace_refresh.py`).

A refresh reads each registry's whole latest listing first; only a listing read to its end
changes what is stored from that registry (entries added, changed, removed). A registry that
fails keeps what berth had from it, and the answer says which failed and where. One refresh runs
at a time (a lease in the table).
"""

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from app.catalog import Remote, ServerDocument, curated_servers, server_json_errors
from app.clock import Clock
from app.contract.packages import NPM, PYPI, PackageSpec, PackageSpecError
from app.domain.installations import ConfigInput, package_inputs, remote_inputs
from app.domain.marketplace import (
    CURATED,
    EntrySummary,
    InvalidCursor,
    MarketplaceEntry,
    RegistryState,
    page_after,
    versions_after_refresh,
    winning_origin,
)
from app.errors import BadRequest, Conflict, NotFound, Unprocessable
from app.ids import new_id
from app.logs import get_logger, log_event
from app.mcp_registry import ListedServer, RegistryUnavailable, list_latest
from app.settings import Settings
from app.store import Store
from app.store.marketplace import DocumentTooLarge
from app.store.table import Page

logger = get_logger("berth.marketplace")
LEASE_MARGIN_SECONDS = 60.0  # a refresh's lease outlives its time budget by this much
INVALID_SHOWN = 20  # invalid entries a refresh's answer names, per registry
_PARSED_MAX = 20_000


@dataclass(frozen=True, slots=True)
class InvalidEntry:
    name: str
    version: str
    problems: list[str]


@dataclass(slots=True)
class RegistryReport:
    url: str
    ok: bool
    entries: int = 0  # what berth holds from it after the refresh
    added: int = 0
    updated: int = 0
    removed: int = 0
    pages: int = 0
    invalid: list[InvalidEntry] = field(default_factory=list)
    invalid_count: int = 0
    error: str | None = None  # where and why its listing failed; what berth had from it is kept


@dataclass(frozen=True, slots=True)
class RefreshReport:
    registries: list[RegistryReport]
    entries: int  # every entry the marketplace lists now, curated ones included
    seconds: float

    @property
    def failed(self) -> list[str]:
        return [report.url for report in self.registries if not report.ok]


InstallKind = Literal["package", "remote"]
RUNNABLE_REGISTRY_TYPES = (NPM, PYPI)  # what a runtime installs itself


def install_target(document: ServerDocument, kind: InstallKind | None = None) -> tuple[InstallKind, Any]:
    """What an installation of `document` runs: its first package a runtime can install (npm or
    PyPI, over stdio), else its first streamable-HTTP remote; `kind` insists on one. Unprocessable
    saying why when there is none."""
    packages = [package for package in document.packages
                if package.registry_type in RUNNABLE_REGISTRY_TYPES and package.transport.type == "stdio"]
    remotes = [remote for remote in document.remotes if remote.type == "streamable-http"]
    if kind in (None, "package") and packages:
        return "package", packages[0]
    if kind in (None, "remote") and remotes:
        return "remote", remotes[0]
    offered = [f"{package.registry_type} package over {package.transport.type}" for package in document.packages]
    offered += [f"{remote.type} remote" for remote in document.remotes]
    wanted = {"package": "an npm or PyPI package over stdio", "remote": "a streamable-HTTP remote",
              None: "an npm or PyPI package over stdio, or a streamable-HTTP remote"}[kind]
    raise Unprocessable(f"{document.name} cannot be installed: berth runs {wanted}; it offers "
                        f"{', '.join(offered) or 'neither'}")


def target_inputs(installation_kind: str, target: dict[str, Any]) -> list[ConfigInput]:
    if installation_kind == "package":
        return package_inputs(PackageSpec.model_validate(target))
    remote = Remote.model_validate(target)
    return remote_inputs(remote.headers, remote.variables)


def entry_inputs(document: ServerDocument) -> list[ConfigInput]:
    """What an installation of `document` takes (nothing when it cannot be installed)."""
    kind, _ = installability(document)
    if kind is None:
        return []
    target = install_target(document, kind)[1]
    return target_inputs(kind, target.model_dump(mode="json", by_alias=True, exclude_none=True))


def installability(document: ServerDocument) -> tuple[InstallKind | None, str | None]:
    """What an installation of `document` would run, or why it cannot be installed."""
    try:
        return install_target(document)[0], None
    except Unprocessable as error:
        return None, error.message


@functools.cache
def curated_entries() -> tuple[MarketplaceEntry, ...]:
    return tuple(MarketplaceEntry(entry_id=entry.id, origin=CURATED, version=entry.version, versions=[entry.version],
                                  document=entry.document.document())
                 for entry in curated_servers() if isinstance(entry.document, ServerDocument))


class MarketplaceService:
    def __init__(self, store: Store, settings: Settings, clock: Clock):
        self.store = store
        self.settings = settings
        self.clock = clock
        self._parsed: dict[tuple[str, str, str], ServerDocument] = {}
        self._parsed_lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------------

    def document(self, entry: MarketplaceEntry) -> ServerDocument:
        """The entry's server.json as a typed document, parsed once per process and version."""
        key = (entry.origin, entry.entry_id, entry.version)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = ServerDocument.model_validate(entry.document)  # valid: checked before it was stored
            with self._parsed_lock:
                if len(self._parsed) >= _PARSED_MAX:
                    self._parsed.clear()
                self._parsed[key] = parsed
        return parsed

    def catalog(self) -> list[MarketplaceEntry]:
        """Every entry by name: the curated ones, and the registries' where no curated one has the name."""
        curated = curated_entries()
        names = {entry.entry_id for entry in curated}
        stored = [entry for entry in self.store.marketplace.entries() if entry.entry_id not in names]
        return sorted([*curated, *stored], key=lambda entry: entry.entry_id)

    def summary(self, entry: MarketplaceEntry) -> EntrySummary:
        document = self.document(entry)
        return EntrySummary(
            entry_id=entry.entry_id, title=document.display_name, description=document.description,
            tags=tuple(document.berth.tags),
            registry_types=tuple(dict.fromkeys(package.registry_type for package in document.packages)),
            transports=tuple(dict.fromkeys([*(package.transport.type for package in document.packages),
                                            *(remote.type for remote in document.remotes)])),
            identifiers=tuple(package.identifier for package in document.packages))

    def search(self, *, text: str | None, registry_type: str | None, transport: str | None, tags: Sequence[str],
               limit: int, cursor: str | None) -> Page[MarketplaceEntry]:
        found = [entry for entry in self.catalog()
                 if self.summary(entry).matches(text=text, registry_type=registry_type, transport=transport,
                                                tags=tags)]
        return _page(found, cursor, limit)

    def entry(self, entry_id: str) -> MarketplaceEntry:
        """One entry of the marketplace (a curated one before a registry's)."""
        found = next((entry for entry in curated_entries() if entry.entry_id == entry_id), None)
        found = found or self.store.marketplace.entry(entry_id)
        if found is None:
            raise NotFound(f"no marketplace entry {entry_id}")
        return found

    def registry_page(self, *, limit: int, cursor: str | None, origin: str | None = None) -> Page[MarketplaceEntry]:
        """The entries stored from registries, by name (optionally from one registry only)."""
        stored = [entry for entry in self.store.marketplace.entries() if origin is None or entry.origin == origin]
        return _page(stored, cursor, limit)

    def registry_entry(self, entry_id: str) -> MarketplaceEntry:
        found = self.store.marketplace.entry(entry_id)
        if found is None:
            raise NotFound(f"no registry entry {entry_id}")
        return found

    def registry_states(self) -> list[RegistryState]:
        """The configured registries' last refreshes (a registry never refreshed has none)."""
        states = {state.url: state for state in self.store.marketplace.registry_states()}
        return [states[url] for url in self.settings.mcp_registry_urls if url in states]

    # --- refreshing ------------------------------------------------------------------------------

    def refresh(self, budget_seconds: float, *, actor: str) -> RefreshReport:
        """Read every configured registry within `budget_seconds` and store what changed;
        Conflict while another refresh runs."""
        started = time.monotonic()
        holder = new_id("rfr")
        marketplace = self.store.marketplace
        if not marketplace.take_refresh_lease(holder, self.clock.now(), budget_seconds + LEASE_MARGIN_SECONDS):
            raise Conflict("a marketplace refresh is already running; try again when it ends")
        try:
            reports = self._refresh_all(started + budget_seconds)
        finally:
            marketplace.release_refresh_lease(holder)
        report = RefreshReport(reports, len(self.catalog()), round(time.monotonic() - started, 3))
        log_event(logger, "marketplace refreshed", actor=actor, entries=report.entries, failed=report.failed,
                  seconds=report.seconds)
        return report

    def _refresh_all(self, deadline: float) -> list[RegistryReport]:
        origins = list(dict.fromkeys(self.settings.mcp_registry_urls))
        held = {entry.entry_id: entry for entry in self.store.marketplace.entries(fresh=True)}
        # Entries from registries no longer configured go: nothing would ever refresh them.
        gone = [name for name, entry in held.items() if entry.origin not in origins]
        self.store.marketplace.remove(gone)
        for name in gone:
            del held[name]
        reports = []
        headers = {"Accept": "application/json", "User-Agent": "berth-marketplace"}
        with httpx.Client(headers=headers, follow_redirects=False) as client:
            for url in origins:
                report = self._refresh_one(client, url, origins, held, deadline)
                reports.append(report)
                self.store.marketplace.save_registry_state(RegistryState(
                    url=url, attempted_at=self.clock.iso(), entries=report.entries, error=report.error,
                    succeeded_at=self.clock.iso() if report.ok else _last_success(self.store, url)))
        return reports

    def _refresh_one(self, client: httpx.Client, url: str, origins: list[str], held: dict[str, MarketplaceEntry],
                     deadline: float) -> RegistryReport:
        mine = {name for name, entry in held.items() if entry.origin == url}
        try:
            listing = list_latest(client, url, page_size=self.settings.registry_page_size, deadline=deadline,
                                  request_timeout=self.settings.registry_timeout_seconds)
        except RegistryUnavailable as error:
            log_event(logger, "registry failed", registry=url, error=str(error))
            return RegistryReport(url, ok=False, entries=len(mine), error=str(error))
        report = RegistryReport(url, ok=True, pages=listing.pages)
        listed, changed = set(), []
        for server in listing.servers:
            entry = self._entry_of(server, url, held, report)
            if entry is None or not winning_origin(origins, _origin(held.get(entry.entry_id)), url):
                continue
            listed.add(entry.entry_id)
            previous = held.get(entry.entry_id)
            if previous is None or _differs(previous, entry):
                report.added += previous is None
                report.updated += previous is not None
                changed.append(entry)
                held[entry.entry_id] = entry
        removed = sorted(mine - listed)
        self.store.marketplace.save(changed)
        self.store.marketplace.remove(removed)
        for name in removed:
            del held[name]
        report.removed = len(removed)
        report.entries = sum(entry.origin == url for entry in held.values())
        return report

    def _entry_of(self, listed: ListedServer, url: str, held: dict[str, MarketplaceEntry],
                  report: RegistryReport) -> MarketplaceEntry | None:
        """The entry a listed server makes, or None (deleted, or invalid: noted in the report)."""
        server = listed.server
        name, version = str(server.get("name", "?")), str(server.get("version", "?"))
        if listed.status == "deleted":
            return None
        problems = server_json_errors(server)
        entry = None
        if not problems:
            try:
                document = ServerDocument.model_validate(server)
                previous = held.get(document.name)
                known = previous.versions if previous is not None and previous.origin == url else []
                entry = MarketplaceEntry(entry_id=document.name, origin=url, version=document.version,
                                         versions=versions_after_refresh(known, document.version), document=server,
                                         status=listed.status, published_at=listed.published_at,
                                         updated_at=listed.updated_at, stored_at=self.clock.iso())
                self.store.marketplace.check_storable(entry)
            except (ValidationError, PackageSpecError, DocumentTooLarge) as error:
                problems, entry = [str(error).splitlines()[0]], None
        if problems:
            report.invalid_count += 1
            if len(report.invalid) < INVALID_SHOWN:
                report.invalid.append(InvalidEntry(name, version, problems[:5]))
        return entry


def _origin(entry: MarketplaceEntry | None) -> str | None:
    return entry.origin if entry is not None else None


def _differs(held: MarketplaceEntry, fresh: MarketplaceEntry) -> bool:
    return (held.origin, held.version, held.status, held.document, held.versions) != (
        fresh.origin, fresh.version, fresh.status, fresh.document, fresh.versions)


def _last_success(store: Store, url: str) -> str | None:
    previous = next((state for state in store.marketplace.registry_states() if state.url == url), None)
    return previous.succeeded_at if previous is not None else None


def _page(entries: list[MarketplaceEntry], cursor: str | None, limit: int) -> Page[MarketplaceEntry]:
    try:
        items, following = page_after(entries, lambda entry: entry.entry_id, cursor, limit)
    except InvalidCursor as error:
        raise BadRequest(str(error)) from error
    return Page(items, following)
