"""`/mcp`: berth's own MCP server (app/mcp) over streamable HTTP, stateless, answering JSON.

The route is an ASGI app, not a FastAPI operation: MCP clients speak JSON-RPC, whose contract is
the MCP specification and the tools' own schemas (`tools/list`), so `/mcp` is not in the OpenAPI
document (docs/decisions.md). The endpoint, and with it the MCP SDK (about a second of imports),
is built on the first request to `/mcp`; including this route group, as `/openapi.json` does,
imports neither.
"""

import threading
from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app import composition
from app.auth.principal import Principal, bearer_secret
from app.composition import Services
from app.settings import Settings

if TYPE_CHECKING:  # the records are not needed to answer with the route group merely included
    from app.domain.accounts import CredentialKind

LOOPBACK = ("http://127.0.0.1", "http://localhost", "http://[::1]")
_CALLERS: "tuple[CredentialKind, ...]" = ("session", "api_key")


async def authenticate(request: Request) -> Principal:
    """An API key or a session token, as the REST routes take them: from the read cache on the
    loop, else from the table in a worker thread (under Lambda a worker thread lives for one
    invocation, so a cache hit saves starting one: docs/benchmarks.md)."""
    secret = bearer_secret(request.headers.get("authorization"), request.headers.get("x-api-key"))
    authenticator = composition.services().authenticator
    cached = authenticator.resolve_cached(secret, kinds=_CALLERS)
    return cached if cached is not None else await run_in_threadpool(authenticator.resolve, secret, kinds=_CALLERS)


def allowed_urls(settings: Settings) -> tuple[list[str], list[str]]:
    """The hosts and origins `/mcp` answers to: the public URL's, the configured ones, and loopback
    when berth runs locally (the API Gateway domain of each request is added by the endpoint)."""
    local = list(LOOPBACK) if settings.mode == "local" else []
    return ([settings.base_url, *settings.mcp_allowed_hosts, *local],
            [settings.base_url, *settings.mcp_allowed_origins, *local])


class LazyMcpEndpoint:
    """Builds berth's MCP endpoint for the process's services on the first request, and again only
    if they are replaced (tests reset them)."""

    def __init__(self) -> None:
        self._built: tuple[Services, ASGIApp] | None = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._endpoint()(scope, receive, send)

    def _endpoint(self) -> ASGIApp:
        services, built = composition.services(), self._built
        if built is None or built[0] is not services:
            with self._lock:
                built = self._built
                if built is None or built[0] is not services:
                    built = self._built = (services, _build(services.settings))
        return built[1]


def _build(settings: Settings) -> ASGIApp:
    from app.mcp.berth import berth_server
    from app.mcp.endpoint import StatelessMCPEndpoint, allowed_hosts_for, allowed_origins_for

    hosts, origins = allowed_urls(settings)
    return StatelessMCPEndpoint(berth_server(), authenticate=authenticate, allowed_hosts=allowed_hosts_for(hosts),
                                allowed_origins=allowed_origins_for(origins))


# A Route at exactly /mcp (a Mount would answer POST /mcp with a redirect to /mcp/); every method
# reaches the endpoint, which answers 405 itself.
router = APIRouter(routes=[Route("/mcp", endpoint=LazyMcpEndpoint())])
