"""`/api/runtime/*`: how to reach a sandbox's runtime, a proxy token for it, and the proxy itself."""

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.clock import iso
from app.schemas.sandboxes import runtime_config_view
from app.web.deps import ServicesDep, User
from app.web.openapi import errors
from app.web.proxying import PROXY_TOKEN_HEADER, passed_headers

router = APIRouter(prefix="/api/runtime", tags=["runtime proxy"])


@router.get("/config/{sandbox_id}")
def runtime_config(principal: User, sandbox_id: str, services: ServicesDep) -> dict[str, Any]:
    job, runtime = services.proxy.route(principal, sandbox_id)
    return runtime_config_view(job, runtime, services.settings.base_url)


@router.get("/proxy-auth/{sandbox_id}", responses=errors(409))
def proxy_auth(principal: User, sandbox_id: str, services: ServicesDep,
               method: Annotated[str, Query(pattern="^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$")] = "GET"
               ) -> dict[str, Any]:
    """A short-lived token, signed for one request of `method` to this sandbox, that its runtime
    verifies (and honours once) before forwarding."""
    token, expires = services.proxy.token(principal, sandbox_id, method)
    return {"success": True, "token": token, "expires_at": iso(expires), "method": method,
            "header": PROXY_TOKEN_HEADER}


async def proxy(principal: User, sandbox_id: str, path: str, request: Request, services: ServicesDep) -> Response:
    """Forward an HTTP request to the sandbox's streamable-HTTP server through its runtime."""
    body = await request.body()
    headers = passed_headers(request.headers)
    answer = await run_in_threadpool(
        lambda: services.proxy.forward(principal, sandbox_id, method=request.method, path=path,
                                       query=request.url.query, headers=headers, body=body,
                                       token=request.headers.get(PROXY_TOKEN_HEADER)))
    return Response(base64.b64decode(answer.body_b64), status_code=answer.status,
                    headers=passed_headers(answer.headers))


# One route per method, so each has its own operation id in the OpenAPI document.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
    router.add_api_route("/proxy/{sandbox_id}/{path:path}", proxy, methods=[_method], responses=errors(409, 502, 504),
                         operation_id=f"proxy_{_method.lower()}", summary=f"Proxy {_method} to the sandbox")
