"""Time in the two forms berth stores: epoch seconds for arithmetic and TTLs, ISO 8601 for people.

Services take a `Clock` (the composition root gives them this one), so time can be stood still or
moved in a test without patching modules.
"""

import time
from datetime import UTC, datetime


def iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d")


class Clock:
    def now(self) -> float:
        return time.time()

    def iso(self, epoch: float | None = None) -> str:
        """`epoch` (default: now) in ISO 8601, UTC, to the millisecond."""
        return iso(self.now() if epoch is None else epoch)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
