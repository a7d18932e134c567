"""The marketplace: MCP server definitions from the curated catalog (shipped with berth) and from
MCP registries (stored by a refresh), and the rules for listing and searching them.

An entry is one server, by its registry name (`io.github.owner/server`): the latest version its
origin lists, every version berth has seen from it, and the `server.json` itself. The curated
catalog wins over a registry for a name both know (it is the vetted definition); among
registries, the first one configured wins.
"""

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

CURATED = "curated"  # the origin of the entries berth ships
VERSIONS_KEPT = 20  # versions remembered per entry, newest first

Listed = TypeVar("Listed")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketplaceEntry:
    entry_id: str  # the server's registry name
    origin: str  # CURATED, or the base URL of the registry it came from
    version: str  # the latest version the origin lists
    versions: list[str] = field(default_factory=list)  # every version seen from the origin, newest first
    document: dict[str, Any] = field(default_factory=dict)  # the server.json
    status: str = "active"  # as the registry says: active, deprecated
    published_at: str | None = None
    updated_at: str | None = None
    stored_at: str | None = None  # when a refresh last stored a change to it


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryState:
    """How the last refresh of one registry went."""

    url: str
    attempted_at: str
    succeeded_at: str | None = None
    entries: int = 0  # how many of its entries berth holds
    error: str | None = None  # why the last attempt failed (None: it succeeded)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntrySummary:
    """What search looks at in an entry."""

    entry_id: str
    title: str
    description: str
    tags: tuple[str, ...] = ()
    registry_types: tuple[str, ...] = ()  # of its packages: npm, pypi, oci, ...
    transports: tuple[str, ...] = ()  # of its packages and remotes: stdio, streamable-http, sse
    identifiers: tuple[str, ...] = ()  # its packages' names

    def matches(self, *, text: str | None = None, registry_type: str | None = None, transport: str | None = None,
                tags: Sequence[str] = ()) -> bool:
        """Every word of `text` somewhere in the name, title, description, tags or package names
        (case-insensitive); the registry type and transport among the entry's; every tag given."""
        if registry_type and registry_type not in self.registry_types:
            return False
        if transport and transport not in self.transports:
            return False
        if any(tag.lower() not in {own.lower() for own in self.tags} for tag in tags):
            return False
        haystack = " ".join((self.entry_id, self.title, self.description, *self.tags, *self.identifiers)).lower()
        return all(word in haystack for word in (text or "").lower().split())


def versions_after_refresh(known: Iterable[str], latest: str) -> list[str]:
    """The versions remembered once `latest` is listed: it first, then the others seen before."""
    return [latest, *(version for version in known if version != latest)][:VERSIONS_KEPT]


def winning_origin(origins: Sequence[str], current: str | None, candidate: str) -> bool:
    """Whether an entry from `candidate` replaces one held from `current` (None: none held): a
    registry configured earlier wins; one no longer configured loses to any that is."""
    if current is None or current == candidate:
        return True
    rank = {origin: position for position, origin in enumerate(origins)}
    return rank.get(candidate, len(rank)) < rank.get(current, len(rank))


# --- paging a listing that is filtered in memory ----------------------------------------------


def page_after(items: Sequence[Listed], key_of, cursor: str | None, limit: int) -> tuple[list[Listed], str | None]:
    """`limit` items after the one the cursor names (items sorted by key), and the next cursor
    (None on the last page). The cursor is the last key seen, so a listing that changed between
    pages neither repeats nor skips what stayed."""
    after = decode_cursor(cursor) if cursor else None
    remaining = [item for item in items if after is None or key_of(item) > after]
    page = remaining[:limit]
    return page, encode_cursor(key_of(page[-1])) if len(remaining) > limit else None


class InvalidCursor(ValueError):
    """A cursor this listing did not make."""


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidCursor("invalid pagination cursor") from error
