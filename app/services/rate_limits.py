"""Rate limits on the routes anyone may call before signing in (login, signup, forgot): so many
attempts per fixed window for each address and for each client address.

Counters live in the table (app.store.limits), so every Lambda instance counts together; one
attempt is one conditional transaction over its counters, and a refused attempt counts nothing.
Addresses are counted by digest, lower-cased: the table holds no list of who tried what.
"""

from app.clock import Clock
from app.errors import TooManyRequests
from app.ids import hash_secret
from app.settings import Settings
from app.store import Store
from app.store.limits import RateCounter


class AuthRateLimits:
    def __init__(self, store: Store, settings: Settings, clock: Clock):
        self.store = store
        self.settings = settings
        self.clock = clock

    def admit(self, action: str, address: str, client: str | None) -> None:
        """Count one `action` attempt for `address` from `client` (the caller's network address,
        None when unknown), or raise TooManyRequests with when to try again."""
        settings = self.settings
        by_address = RateCounter(f"{action}#address#{hash_secret(address.lower())}", settings.auth_rate_per_address)
        counters = [by_address]
        if client:
            counters.append(RateCounter(f"{action}#client#{hash_secret(client)}", settings.auth_rate_per_client))
        window_seconds = settings.auth_rate_window_seconds
        now = self.clock.now()
        window = int(now // window_seconds)
        ends = (window + 1) * window_seconds
        full = self.store.limits.take(counters, window, expires_epoch=ends)
        if full is not None:
            whose = "this address" if full is by_address else "your network address"
            raise TooManyRequests.retry_after(
                f"too many {action} attempts for {whose}: at most {full.limit} every {window_seconds} s; "
                f"try again in {int(ends - now) + 1} s", int(ends - now) + 1)
