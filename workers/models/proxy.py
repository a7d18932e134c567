"""`model.proxy`: one HTTP request forwarded to a ready engine on loopback.

Buffered (`forward`): the answer travels back in a ControlReply, as over the control queue.
Streamed (`stream`): the engine's status, headers and body are sent on as they arrive (a chat
completion with `stream: true` answers Server-Sent Events), for the worker's direct control
endpoint, which hands this an ASGI `send`. A request that cannot be forwarded is answered there
with a ControlReply instead; the CONTROL_ANSWER_HEADER tells the two apart (`proxied`/`reply`).
"""

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from app.contract.messages import CONTROL_ANSWER_HEADER, ControlReply, ProxyResponse
from app.contract.models import EngineRequest
from workers.executors.base import ExecutorError
from workers.models.engines import LOOPBACK
from workers.models.installation import Installation

# Hop-by-hop headers, and the caller's credentials: the API authenticated the caller, the engine
# on loopback needs nothing of it.
_DROPPED_REQUEST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                                      "authorization", "cookie", "x-api-key"})
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_REPLY_STATUS = {"not_running": 409, "not_found": 404, "bad_request": 400, "forbidden": 403, "failed": 502, "": 502}

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _outgoing(installation: Installation, request: EngineRequest, deadline: float) -> tuple[httpx.Request, float]:
    """The request for the engine, with what is left of the timeout (the message's deadline bounds it)."""
    timeout = min(request.timeout_seconds, deadline - time.time())
    if timeout <= 0:
        raise ExecutorError("the request reached the runtime past its deadline", code="failed")
    url = f"http://{LOOPBACK}:{installation.port}/{request.path}" + (f"?{request.query}" if request.query else "")
    headers = {name: value for name, value in request.headers.items()
               if name.lower() not in _DROPPED_REQUEST_HEADERS}
    try:
        body = base64.b64decode(request.body_b64, validate=True)
    except ValueError as error:
        raise ExecutorError("body_b64 is not base64", code="bad_request") from error
    built = installation.http_client().build_request(request.method, url, headers=headers, content=body,
                                                     timeout=timeout)
    return built, timeout


def _kept(headers: httpx.Headers, dropped: frozenset[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in dropped}


async def forward(installation: Installation, request: EngineRequest, deadline: float) -> ProxyResponse:
    outgoing, timeout = _outgoing(installation, request, deadline)
    client = installation.http_client()
    try:
        answer = await client.send(outgoing)
    except httpx.TimeoutException as error:
        raise ExecutorError(f"the engine did not answer within {timeout:.0f} s", code="failed") from error
    except httpx.HTTPError as error:
        raise ExecutorError(f"the engine did not answer: {type(error).__name__}", code="failed") from error
    # The body was decoded (gzip and the like), so its encoding header no longer holds.
    headers = _kept(answer.headers, _DROPPED_RESPONSE_HEADERS | {"content-encoding"})
    return ProxyResponse(status=answer.status_code, headers=headers,
                         body_b64=base64.b64encode(answer.content).decode())


async def stream(installation: Installation, request: EngineRequest, deadline: float, send: Send) -> None:
    outgoing, timeout = _outgoing(installation, request, deadline)
    client = installation.http_client()
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as error:
        raise ExecutorError(f"the engine did not answer: {type(error).__name__}", code="failed") from error
    try:
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in _kept(answer.headers, _DROPPED_RESPONSE_HEADERS).items()]
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [*headers, (CONTROL_ANSWER_HEADER.encode(), b"proxied")]})
        try:
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            pass  # the engine broke off mid-answer: end what was sent (the client sees a short stream)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await answer.aclose()


async def send_reply(send: Send, error: ExecutorError) -> None:
    """Answer a streamed request that was not forwarded, with the ControlReply the buffered path
    would have given and the status the API would map it to."""
    code = error.code if error.code in _REPLY_STATUS else "failed"
    reply = ControlReply.model_validate({"ok": False, "error": str(error), "code": code})
    body = reply.model_dump_json().encode()
    await send({"type": "http.response.start", "status": _REPLY_STATUS[reply.code],
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (CONTROL_ANSWER_HEADER.encode(), b"reply")]})
    await send({"type": "http.response.body", "body": body})
