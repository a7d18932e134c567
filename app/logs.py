"""Structured JSON-line logs carrying the request id and workspace.

Context lives in contextvars set by the request middleware and by authentication. Messages
never carry secrets: callers log ids and hashes' prefixes, and `redact` scrubs anything that
looks like a bearer secret as a last line of defence.
"""

import contextvars
import json
import logging
import re
import sys
import time

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
workspace_var: contextvars.ContextVar[str] = contextvars.ContextVar("workspace", default="-")

_SECRET_PATTERN = re.compile(r"\b(bst|bak|brt|bjt|brs|bvt|bpx)_[A-Za-z0-9_\-]{8,}")


def redact(text: str) -> str:
    return _SECRET_PATTERN.sub(lambda m: f"{m.group(1)}_[redacted]", text)


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": request_id_var.get(),
            "workspace": workspace_var.get(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            entry.update({k: redact(str(v)) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonLineFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def log_event(logger: logging.Logger, message: str, **fields) -> None:
    logger.info(message, extra={"fields": fields})
