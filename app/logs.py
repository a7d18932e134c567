"""Structured JSON-line logs carrying the request id and workspace.

Context lives in contextvars set by the request middleware and by authentication; the format
and the scrubbing of secrets are the worker's too (app.contract.logs).
"""

import contextvars
import logging
import sys

from app.contract.logs import JsonLineFormatter, log

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


def _request_context() -> dict:
    return {"request_id": request_id_var.get(), "workspace": current_workspace()}


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
    # A JSON line names no source line, thread or process: skip collecting them for every record
    # (the settings of the logging HOWTO's "Optimization" section; docs/benchmarks.md).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _StderrHandler()
    handler.setFormatter(JsonLineFormatter(_request_context))
    root.addHandler(handler)
    root.setLevel(level)
    # One INFO line per outgoing request (the control channel to workers, the model hub, external
    # endpoints) would double every proxied call's cost in logging; their failures still show.
    for chatty in ("httpx", "httpx2"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def log_event(logger: logging.Logger, message: str, **fields) -> None:
    log(logger, logging.INFO, message, **fields)
