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
# A mutable holder, so a workspace found inside a threadpool route is seen by the access log too.
_request_fields: contextvars.ContextVar[dict] = contextvars.ContextVar("request_fields")


def begin_request(request_id: str) -> None:
    request_id_var.set(request_id)
    _request_fields.set({"workspace": "-"})


def set_workspace(workspace_id: str) -> None:
    fields = _request_fields.get(None)
    if fields is None:
        _request_fields.set({"workspace": workspace_id})
    else:
        fields["workspace"] = workspace_id


def current_workspace() -> str:
    fields = _request_fields.get(None)
    return fields["workspace"] if fields else "-"

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
            "workspace": current_workspace(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            entry.update({k: redact(str(v)) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (it is swapped under test capture)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonLineFormatter) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonLineFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def log_event(logger: logging.Logger, message: str, **fields) -> None:
    logger.info(message, extra={"fields": fields})
