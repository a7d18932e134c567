"""The marketplace's entries from MCP registries, each registry's last refresh, and the lease a
refresh holds while it runs: all in the one `MARKET` partition (public definitions, read by
every workspace, written only by a refresh).

A `server.json` is stored as JSON text, not as a DynamoDB map: a registry's document may nest
deeper than DynamoDB allows or hold values it cannot (empty map keys), and it is only ever read
whole. Reads of the whole listing are cached briefly: search filters it in memory.
"""

import json

from app.domain.marketplace import MarketplaceEntry, RegistryState
from app.errors import ConditionFailed
from app.store import keys
from app.store.cache import TtlCache
from app.store.records import attributes, record
from app.store.table import TTL_ATTRIBUTE, Condition, Table

# DynamoDB's item limit is 400 KB: leave room for the other attributes.
DOCUMENT_MAX_BYTES = 350_000
_LISTING = "entries"


class DocumentTooLarge(ValueError):
    """A server.json too large to store."""


def _entry(item: dict) -> MarketplaceEntry:
    return record(MarketplaceEntry, item, document=json.loads(item["document"]))


def _entry_item(entry: MarketplaceEntry) -> dict:
    document = json.dumps(entry.document, separators=(",", ":"))
    if len(document.encode()) > DOCUMENT_MAX_BYTES:
        raise DocumentTooLarge(f"its server.json is over {DOCUMENT_MAX_BYTES} bytes")
    pk, sk = keys.marketplace_entry(entry.entry_id)
    return {"pk": pk, "sk": sk, **attributes(entry, skip=("document",)), "document": document}


class Marketplace:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._listing: TtlCache[list[MarketplaceEntry]] = TtlCache(cache_seconds)

    def entries(self, *, fresh: bool = False) -> list[MarketplaceEntry]:
        """Every stored entry, by name; possibly a few seconds old unless `fresh`."""
        listed = None if fresh else self._listing.get(_LISTING)
        if listed is None:
            items = self.table.query(keys.MARKET, prefix=keys.MARKET_ENTRY).items
            listed = [_entry(item) for item in items]
            self._listing.put(_LISTING, listed)
        return listed

    def entry(self, name: str) -> MarketplaceEntry | None:
        item = self.table.get(*keys.marketplace_entry(name))
        return _entry(item) if item else None

    def check_storable(self, entry: MarketplaceEntry) -> None:
        """DocumentTooLarge when the entry could not be stored."""
        _entry_item(entry)

    def save(self, entries: list[MarketplaceEntry]) -> None:
        self.table.batch_put([_entry_item(entry) for entry in entries])
        self._listing.forget(_LISTING)

    def remove(self, names: list[str]) -> None:
        for name in names:
            self.table.delete(*keys.marketplace_entry(name))
        self._listing.forget(_LISTING)

    # --- registries and the refresh lease ------------------------------------------------------

    def registry_states(self) -> list[RegistryState]:
        items = self.table.query(keys.MARKET, prefix=keys.MARKET_REGISTRY).items
        return [record(RegistryState, item) for item in items]

    def save_registry_state(self, state: RegistryState) -> None:
        pk, sk = keys.registry_state(state.url)
        self.table.put({"pk": pk, "sk": sk, **attributes(state)})

    def take_refresh_lease(self, holder: str, now: float, seconds: float) -> bool:
        """Hold the refresh lease until `now + seconds`; False while another holder's is live. A
        lapsed lease (its holder died) is taken over."""
        pk, sk = keys.refresh_lease()
        item = {"pk": pk, "sk": sk, "holder": holder, TTL_ATTRIBUTE: int(now + seconds) + 1}
        try:
            self.table.put(item, must_not_exist=True)
            return True
        except ConditionFailed:
            pass
        # Still there: live (someone refreshes), or lapsed (never released): only a lapsed one goes.
        if not self.table.delete(pk, sk, condition=Condition(below={TTL_ATTRIBUTE: int(now) + 1})):
            return False
        try:
            self.table.put(item, must_not_exist=True)
            return True
        except ConditionFailed:
            return False

    def release_refresh_lease(self, holder: str) -> None:
        self.table.delete(*keys.refresh_lease(), condition=Condition(equals={"holder": holder}))
