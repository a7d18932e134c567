"""The worker's direct control endpoint: the API POSTs a signed ControlMessage to `/control` and
reads the ControlReply from the response, instead of a queue round trip and a posted reply.

The answer comes from `ControlHandling.answer` (workers.control), as for the control queue, so
both paths behave alike; the queue stays the API's fallback whenever this endpoint cannot be
reached. `/control/stream` takes the same signed request for an action an executor answers as a
stream (its STREAM_HANDLERS: `model.proxy`), and sends the answer on as it arrives; the
contract describes both (app.contract.messages, "the direct control endpoint").

Only the API can sign a request (app.contract.signing.sign_control_request, keyed by the runtime's
signing key: see RuntimeIdentity.signing_key). A request is refused with 401 when it is unsigned,
forged, signed more than 30 s away from this host's clock, past its deadline, or carries a request
id already seen; 413 when its body is larger than any the API sends. Neither the key nor a body is
ever logged.

uvicorn serves it inside the worker's own event loop. The worker owns SIGTERM/SIGINT and stops
this server itself, so uvicorn's signal handling is switched off.
"""

import asyncio
import contextlib
import heapq
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from app.contract.logs import log
from app.contract.messages import CONTROL_PATH, CONTROL_STREAM_PATH, ControlMessage, ControlReply
from app.contract.signing import (
    CONTROL_BODY_MAX_BYTES,
    CONTROL_SIGNATURE_HEADER,
    CONTROL_SIGNATURE_TOLERANCE_SECONDS,
    ControlRequestRejected,
    verify_control_request,
)
from workers.executors.registry import StreamHandler

# Longer than the API client's keep-alive expiry (app.services.control), so the API always drops
# an idle connection before the worker closes it under a request in flight.
KEEP_ALIVE_SECONDS = 75
SHUTDOWN_GRACE_SECONDS = 3  # requests in flight when the worker stops get this long to finish
# A request signed at `t` verifies until `t + tolerance`, and `t` may be up to `tolerance` ahead of
# this clock, so an id must be remembered at most this long (or until its deadline, if sooner).
REPLAY_WINDOW_SECONDS = 2 * CONTROL_SIGNATURE_TOLERANCE_SECONDS

Answer = Callable[[ControlMessage], Awaitable[ControlReply]]
StreamHandlers = Callable[[str], StreamHandler | None]  # action -> how to stream its answer, if it streams
logger = logging.getLogger("berth.worker.control")


class RecentRequests:
    """Request ids accepted lately, each kept until a replay of it would fail verification anyway."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._expiry: list[tuple[float, str]] = []  # heap of (forget at, request id)

    def first_time(self, request_id: str, deadline: float, now: float) -> bool:
        """Remember `request_id`; False if it was already remembered (a replay)."""
        while self._expiry and self._expiry[0][0] <= now:
            self._ids.discard(heapq.heappop(self._expiry)[1])
        if request_id in self._ids:
            return False
        self._ids.add(request_id)
        heapq.heappush(self._expiry, (min(deadline, now + REPLAY_WINDOW_SECONDS), request_id))
        return True

    def __len__(self) -> int:
        return len(self._ids)


class ControlEndpoint:
    """The ASGI application: `POST /control` and `POST /control/stream`. Answers 503 until a
    registered worker is attached."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._answer: Answer | None = None
        self._streams: StreamHandlers | None = None
        self.recent = RecentRequests()

    def attach(self, key: str, answer: Answer, streams: StreamHandlers | None = None) -> None:
        self._key, self._answer, self._streams = key, answer, streams

    def detach(self) -> None:
        self._key, self._answer, self._streams = None, None, None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in (CONTROL_PATH, CONTROL_STREAM_PATH):
            return await _respond(send, 404, _error(404, f"no such route; the control endpoint is POST {CONTROL_PATH} "
                                                         f"(and {CONTROL_STREAM_PATH} for streamed answers)"))
        if scope["method"] != "POST":
            return await _respond(send, 405, _error(405, "use POST"), [(b"allow", b"POST")])
        message = await self._verified(scope, receive, send)
        if message is None:
            return
        if scope["path"] == CONTROL_STREAM_PATH:
            return await self._stream(message, send)
        answer = self._answer
        if answer is None:  # detached while the request was read
            return await _respond(send, 503, _error(503, "this runtime is not ready for control requests"))
        try:
            reply = await asyncio.wait_for(answer(message), timeout=message.deadline - time.time())
        except TimeoutError:
            _log_late(message)
            return await _respond(send, 504, _error(504, f"{message.action} did not finish before its deadline"))
        await _respond(send, 200, reply.model_dump_json().encode())

    async def _verified(self, scope: dict, receive: Callable, send: Callable) -> ControlMessage | None:
        """The request's control message, signed by the API and seen for the first time; None when
        the request was answered already (refused, or the client went away)."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > CONTROL_BODY_MAX_BYTES:
            await _respond(send, 413, _error(413, f"body larger than {CONTROL_BODY_MAX_BYTES} bytes"))
            return None
        try:
            body = await _read_body(receive, CONTROL_BODY_MAX_BYTES)
        except _Disconnected:
            return None
        if body is None:
            await _respond(send, 413, _error(413, f"body larger than {CONTROL_BODY_MAX_BYTES} bytes"))
            return None
        key = self._key
        if key is None:
            await _respond(send, 503, _error(503, "this runtime is not ready for control requests"))
            return None
        client = "{}:{}".format(*scope["client"]) if scope.get("client") else "unknown"
        try:
            message = verify_control_request(key, headers.get(CONTROL_SIGNATURE_HEADER.lower()), body, time.time())
        except ControlRequestRejected as exc:
            log(logger, logging.WARNING, "control request refused", reason=str(exc), client=client)
            await _respond(send, 401, _error(401, str(exc)))
            return None
        except ValueError:
            log(logger, logging.WARNING, "signed control request is not a control message", client=client)
            await _respond(send, 400, _error(400, "the body is not a control message"))
            return None
        if not self.recent.first_time(message.request_id, message.deadline, time.time()):
            log(logger, logging.WARNING, "control request refused", reason="replayed request id", client=client,
                action=message.action)
            await _respond(send, 401, _error(401, "this request was already received"))
            return None
        return message

    async def _stream(self, message: ControlMessage, send: Callable) -> None:
        """Answer through the action's stream handler until it ends or the deadline passes: 504
        if nothing was sent by then, else the body ends where it was."""
        handler = self._streams(message.action) if self._streams is not None else None
        if handler is None:
            return await _respond(send, 400, _error(400, f"{message.action} is not answered as a stream; "
                                                         f"POST it to {CONTROL_PATH}"))
        response = _ResponseProgress(send)
        try:
            await asyncio.wait_for(handler(message, response.send), timeout=message.deadline - time.time())
        except TimeoutError:
            _log_late(message)
            if not response.started:
                return await _respond(send, 504, _error(504, f"{message.action} did not start answering before "
                                                             "its deadline"))
        except Exception:
            log(logger, logging.ERROR, "streamed control action failed", action=message.action, exc_info=True)
            if not response.started:
                return await _respond(send, 502, _error(502, f"{message.action} failed unexpectedly"))
        if not response.ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _ResponseProgress:
    """An ASGI `send` that remembers how far the response got."""

    def __init__(self, send: Callable) -> None:
        self._send = send
        self.started = self.ended = False

    async def send(self, event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            self.started = True
        elif event["type"] == "http.response.body" and not event.get("more_body", False):
            self.ended = True
        await self._send(event)


def _log_late(message: ControlMessage) -> None:
    log(logger, logging.WARNING, "control action outlived its deadline", action=message.action, job_id=message.job_id)


class ControlServer:
    """The listening socket (bound at once, so the URL is known before registering) and the
    uvicorn server on it, started and stopped by the worker."""

    def __init__(self, host: str, port: int, url: str | None = None, advertised_host: str | None = None):
        self.endpoint = ControlEndpoint()
        self._socket = _listen(host, port)
        bound_port = self._socket.getsockname()[1]
        reachable_host = advertised_host or host
        self.url = url or f"http://{f'[{reachable_host}]' if ':' in reachable_host else reachable_host}:{bound_port}"
        config = uvicorn.Config(
            self.endpoint, lifespan="off", access_log=False, log_config=None, log_level="warning", http="h11",
            ws="none", proxy_headers=False, server_header=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        self._server = _Server(config)
        self._task: asyncio.Task | None = None

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="control-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # its exception, if it has one
                raise RuntimeError("the control server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.endpoint.detach()
        self._server.should_exit = True
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log(logger, logging.WARNING, "control server failed while stopping", exc_info=True)
        self._socket.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn would take SIGTERM/SIGINT from the worker and raise them again when it stops,
        # turning one stop request into two (the second ends the worker's grace period).
        yield


class _Disconnected(Exception):
    pass


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on connections whose
    # socket says so, and with Nagle a response's headers and body meet the client's delayed ACK
    # (+40 ms a request). The socket is not inherited by sandboxes (PEP 446).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _read_body(receive: Callable, limit: int) -> bytes | None:
    """The request body; None as soon as it grows past `limit`."""
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks)


def _error(status: int, message: str) -> bytes:
    return json.dumps({"success": False, "error": message, "status": status}).encode()


async def _respond(send: Callable, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *(headers or [])],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
