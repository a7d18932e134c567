"""Time in the two forms berth stores: epoch seconds for arithmetic and TTLs, ISO 8601 for people."""

import time
from datetime import datetime, timezone


def now() -> float:
    return time.time()


def iso(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(now() if epoch is None else epoch, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day(epoch: float | None = None) -> str:
    return datetime.fromtimestamp(now() if epoch is None else epoch, tz=timezone.utc).strftime("%Y-%m-%d")
