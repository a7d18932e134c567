"""The official MCP registry API, as a client: every latest server a registry lists, page by page
(`GET /v0.1/servers?version=latest&limit=100&cursor=…`).

A listing is all or nothing: a page that fails (an HTTP error, an answer that is not the API's
shape, a cursor that repeats, the time allowed running out) fails the whole listing, and the
error says where. The caller then keeps what it had from that registry, rather than a part of it.
"""

import time
from dataclasses import dataclass
from typing import Any

import httpx

OFFICIAL_META = "io.modelcontextprotocol.registry/official"
MAX_PAGES = 1000  # a registry that pages on past this many is not one we read to the end


class RegistryUnavailable(Exception):
    """A registry's listing could not be read to its end; the message says where and why."""


@dataclass(frozen=True, slots=True)
class ListedServer:
    server: dict[str, Any]  # the server.json, as the registry gave it
    status: str  # active, deprecated, deleted
    published_at: str | None
    updated_at: str | None


@dataclass(frozen=True, slots=True)
class RegistryListing:
    url: str
    servers: list[ListedServer]
    pages: int


def servers_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/v0.1/servers"


def list_latest(client: httpx.Client, base_url: str, *, page_size: int, deadline: float, request_timeout: float
                ) -> RegistryListing:
    """Every server whose latest version `base_url` lists, `page_size` a page. `deadline` is a
    `time.monotonic()` moment; each request waits at most `request_timeout` seconds, and never
    past it."""
    servers: list[ListedServer] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    for page in range(1, MAX_PAGES + 1):
        where = f"page {page}" + (f" (cursor {cursor[:60]})" if cursor else "") + f", after {len(servers)} servers"
        left = deadline - time.monotonic()
        if left <= 0:
            raise RegistryUnavailable(f"{where}: out of time for this refresh")
        params = {"version": "latest", "limit": str(page_size), **({"cursor": cursor} if cursor else {})}
        try:
            response = client.get(servers_url(base_url), params=params, timeout=min(request_timeout, left))
        except httpx.HTTPError as error:
            raise RegistryUnavailable(f"{where}: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise RegistryUnavailable(f"{where}: HTTP {response.status_code} {response.text[:200]}")
        listed, cursor = _page(response, where)
        servers += listed
        if cursor is None:
            return RegistryListing(base_url, servers, page)
        if cursor in seen_cursors:
            raise RegistryUnavailable(f"{where}: the registry answered a cursor it gave before")
        seen_cursors.add(cursor)
    raise RegistryUnavailable(f"more than {MAX_PAGES} pages: the listing was not read to its end")


def _page(response: httpx.Response, where: str) -> tuple[list[ListedServer], str | None]:
    try:
        body = response.json()
    except ValueError as error:
        raise RegistryUnavailable(f"{where}: the answer is not JSON") from error
    body = body if isinstance(body, dict) else {}
    items, metadata = body.get("servers"), body.get("metadata") or {}
    cursor = metadata.get("nextCursor") if isinstance(metadata, dict) else None
    if not isinstance(items, list) or (cursor is not None and not isinstance(cursor, str)):
        raise RegistryUnavailable(f"{where}: the answer is not a registry listing (servers, metadata.nextCursor)")
    listed = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("server"), dict):
            raise RegistryUnavailable(f"{where}: a listed item has no server document")
        meta = item.get("_meta")
        official = meta.get(OFFICIAL_META) if isinstance(meta, dict) else None
        official = official if isinstance(official, dict) else {}
        listed.append(ListedServer(item["server"], str(official.get("status") or "active"),
                                   official.get("publishedAt"), official.get("updatedAt")))
    return listed, cursor or None
