"""`/openai/v1`: the workspace's OpenAI-compatible endpoint. `GET /models` lists its ready
installations by served name; `POST /chat/completions`, `/completions` and `/embeddings` go to an
installation of the model the body names. Authenticated with berth's credentials as
`Authorization: Bearer` (what the `openai` client sends as its API key).

Answers are the engine's own. A request with `"stream": true` is streamed as the engine answers
where the API reaches its runtime directly (the local stack; the shared fleet), and buffered
otherwise, and always under Lambda, whose responses are buffered. Errors here take OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`, app.errors.openai_error_body), which OpenAI
clients read.
"""

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.auth.principal import Principal
from app.composition import Services
from app.errors import BadRequest
from app.services.control import StreamedAnswer
from app.web.deps import ServicesDep, User

router = APIRouter(prefix="/openai/v1", tags=["openai"])

# The relay's own framing; the engine's content type, cache and request-id headers pass.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
                         "upgrade", "proxy-authenticate", "set-cookie"})
_ENGINE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"description": "the engine's answer (JSON, or Server-Sent Events with `stream: true`)",
          "content": {"application/json": {}, "text/event-stream": {}}}}
# The body goes to the engine as it came; berth reads only `model` (which installation) and
# `stream`. The engine checks the rest, in OpenAI's shape.
_ENGINE_REQUEST: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model"], "additionalProperties": True,
    "properties": {"model": {"type": "string", "minLength": 1, "description": "a name of GET /openai/v1/models"},
                   "stream": {"type": "boolean", "default": False}}}}}}}


class OpenAiError(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, rate_limit_error,"
                                  " api_error")
    param: str | None = None
    code: str | None = Field(None, description="e.g. model_not_found")


class OpenAiErrorBody(BaseModel):
    """Errors on `/openai/v1`: OpenAI's shape, plus the status and request id of every berth error."""

    error: OpenAiError
    status: int
    request_id: str


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses, in this surface's error shape."""
    return {status: {"model": OpenAiErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}


class OpenAiModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAiModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAiModel]


@router.get("/models", response_model=OpenAiModelList, responses=openai_errors(401, 403))
def list_models(principal: User, services: ServicesDep) -> OpenAiModelList:
    """The workspace's ready models, by the name to send as `model`."""
    return OpenAiModelList(data=[
        OpenAiModel(id=installation.model_name, owned_by=f"berth:{installation.runtime_id}",
                    created=int(datetime.fromisoformat(installation.created_at).timestamp()))
        for installation in services.openai_gateway.models(principal)])


async def _forward(principal: Principal, request: Request, services: Services, path: str) -> Response:
    body = await request.body()
    try:
        parsed = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    model = parsed.get("model") if isinstance(parsed, dict) else None
    if not isinstance(model, str) or not model:
        raise BadRequest("`model` is required: one of GET /openai/v1/models")
    stream = parsed.get("stream") is True

    def answer() -> tuple[StreamedAnswer, bytes | None]:
        """The answer, read whole unless a stream was asked for (one thread hop, not one a piece)."""
        found = services.openai_gateway.forward(principal, path, body, dict(request.headers), model=model,
                                                stream=stream)
        return found, None if stream else b"".join(found.body)

    found, content = await run_in_threadpool(answer)
    headers = {name: value for name, value in found.headers.items() if name.lower() not in _HOP_BY_HOP}
    if content is None:
        return StreamingResponse(_relayed(found.body), status_code=found.status, headers=headers)
    return Response(content, status_code=found.status, headers=headers)


async def _relayed(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking stream of pieces, read on a thread of its own for its whole life and handed to the
    event loop as they come: a thread hop per piece (what Starlette does with a plain iterator)
    costs more CPU than relaying the piece. A client that goes away stops the reading at the next
    piece, which closes the stream upstream (the worker and the engine stop too)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    gone = threading.Event()

    def pump() -> None:
        try:
            for piece in pieces:
                if gone.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, piece)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
            with contextlib.suppress(RuntimeError):  # the loop is gone (the server stopped): nobody waits
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="openai-relay", daemon=True).start()
    try:
        while (piece := await queue.get()) is not None:
            yield piece
    finally:
        gone.set()


@router.post("/chat/completions", response_class=StreamingResponse, openapi_extra=_ENGINE_REQUEST,
             responses={**_ENGINE_ANSWER,
             **openai_errors(400, 401, 403, 404, 409, 413, 502, 504)})
async def chat_completions(principal: User, request: Request, services: ServicesDep) -> Response:
    return await _forward(principal, request, services, "chat/completions")


@router.post("/completions", response_class=StreamingResponse, openapi_extra=_ENGINE_REQUEST,
             responses={**_ENGINE_ANSWER,
             **openai_errors(400, 401, 403, 404, 409, 413, 502, 504)})
async def completions(principal: User, request: Request, services: ServicesDep) -> Response:
    return await _forward(principal, request, services, "completions")


@router.post("/embeddings", response_class=StreamingResponse, openapi_extra=_ENGINE_REQUEST,
             responses={**_ENGINE_ANSWER,
             **openai_errors(400, 401, 403, 404, 409, 413, 502, 504)})
async def embeddings(principal: User, request: Request, services: ServicesDep) -> Response:
    return await _forward(principal, request, services, "embeddings")
