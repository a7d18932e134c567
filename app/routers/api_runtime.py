"""`/api/runtime/*`: how to reach a sandbox's runtime, a proxy token for it, and the proxy itself."""

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.auth.dependencies import User
from app.services import sandboxes

router = APIRouter(prefix="/api/runtime", tags=["runtime proxy"])

# Hop-by-hop and framing headers are the proxy's own business on each side.
_DROPPED_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "authorization",
                    "x-api-key", "x-berth-proxy-token", "upgrade", "te", "trailer", "proxy-authorization"}


@router.get("/config/{sandbox_id}")
def runtime_config(principal: User, sandbox_id: str) -> dict:
    return sandboxes.runtime_config(principal, sandbox_id)


@router.get("/proxy-auth/{sandbox_id}")
def proxy_auth(principal: User, sandbox_id: str,
               method: Annotated[str, Query(pattern="^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$")] = "GET") -> dict:
    """A short-lived token, signed for this sandbox, that its runtime verifies before forwarding."""
    return sandboxes.proxy_token(principal, sandbox_id, method)


async def proxy(principal: User, sandbox_id: str, path: str, request: Request) -> Response:
    """Forward an HTTP request to the sandbox's streamable-HTTP server through its runtime."""
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
    answer = await run_in_threadpool(
        sandboxes.proxy, principal, sandbox_id, request.method, path, request.url.query, headers, body,
        request.headers.get("x-berth-proxy-token"))
    response_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED_HEADERS}
    return Response(base64.b64decode(answer.body_b64), status_code=answer.status, headers=response_headers)


# One route per method, so each has its own operation id in the OpenAPI document.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
    router.add_api_route("/proxy/{sandbox_id}/{path:path}", proxy, methods=[_method],
                         operation_id=f"proxy_{_method.lower()}", summary=f"Proxy {_method} to the sandbox")
