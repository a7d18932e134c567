"""Rate counters: attempts per fixed window, each an item that expires (TTL) with its window.

One attempt is counted against every counter it falls under in one transaction, only if each is
under its limit: a refused attempt counts against none, and concurrent attempts never overshoot.
"""

from dataclasses import dataclass

from app.errors import ConditionFailed
from app.store import keys
from app.store.table import TTL_ATTRIBUTE, Condition, Table, Write


@dataclass(frozen=True)
class RateCounter:
    name: str  # what is counted, and whose (a digest: no address is stored in clear)
    limit: int


class RateCounters:
    def __init__(self, table: Table):
        self.table = table

    def take(self, counters: list[RateCounter], window: int, expires_epoch: int) -> RateCounter | None:
        """Count one attempt in `window` against every counter (one round trip); None when all had
        room, else (counting nothing) the first counter that was at its limit."""
        writes = [Write.increment(*keys.rate_counter(counter.name, window), add={"attempts": 1},
                                  set={TTL_ATTRIBUTE: expires_epoch},
                                  condition=Condition(below_or_missing={"attempts": counter.limit}))
                  for counter in counters]
        try:
            self.table.transact(writes)
        except ConditionFailed as error:
            return counters[error.failed[0]] if error.failed else counters[0]
        return None
