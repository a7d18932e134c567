"""One log format for the API and the worker: JSON lines, with secrets scrubbed.

Callers log ids and digests' prefixes, never secrets; `redact` is the last line of defence and
knows every secret berth mints (by prefix) and any bearer header. The API adds its request
context (request id, workspace) through `context`; the worker has none.
"""

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

# Session, API-key, runtime-token, join, reset, verification, proxy and runtime-key secrets (app.ids).
SECRET_PREFIXES = ("bst", "bak", "brt", "bjt", "brs", "bvt", "bpx", "brk")
_SECRET_PATTERN = re.compile(
    r"\b(" + "|".join(SECRET_PREFIXES) + r")_[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9_\-.=]{8,}"
)


def redact(text: str) -> str:
    return _SECRET_PATTERN.sub(lambda m: f"{m.group(1)}_[redacted]" if m.group(1) else "Bearer [redacted]", text)


class JsonLineFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", **context(), **fields}`; `fields` come from `log`."""

    def __init__(self, context: Callable[[], dict[str, Any]] | None = None):
        super().__init__()
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if self.context is not None:
            entry.update(self.context())
        for key, value in (getattr(record, "fields", None) or {}).items():
            entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def log(logger: logging.Logger, level: int, message: str, exc_info: Any = False, **fields: Any) -> None:
    """One log line with structured fields (ids, counts; never a secret)."""
    logger.log(level, message, exc_info=exc_info, extra={"fields": fields})
