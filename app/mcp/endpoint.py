"""Serve an `MCPServer` at `/mcp`: streamable HTTP, stateless, JSON responses, no lifespan needed.

The SDK's `StreamableHTTPSessionManager` owns the task group its per-request server tasks run in,
and its `run()` may be entered once per instance. The SDK expects that to happen in the host
app's lifespan, but berth's Lambda handler runs with `Mangum(app, lifespan="off")` (Mangum would
enter the lifespan on every invocation, and the second entry raises). So the endpoint enters a
manager itself, on first use, in a task of its own on the event loop the request runs on, and
keeps it for that loop: under uvicorn one loop serves every request; under Mangum every warm
invocation runs on the same loop (the task waits, suspended, between invocations); a fresh loop
gets a fresh manager (a manager per request, the first design, cost 0.2 ms of CPU per request:
docs/decisions.md, "The /mcp endpoint needs no lifespan").

Before the SDK sees a request the endpoint checks the Host/Origin allowlist (DNS-rebinding
protection, with the SDK's own check, which its transport repeats) — the names configured, plus
the domain API Gateway reports it received the request on (under Lambda: the gateway routes by
that very name, so it is the deployment's own, whatever its id) —, answers anything but POST
with 405 (a stateless server has no stream to GET: the SDK would hold such a GET open until the
client or the platform gave up), and authenticates the caller, whom tools find with
`app.mcp.caller.caller_in`. Its refusals are JSON-RPC errors at the HTTP status they stand for,
which is what MCP clients read and show.
"""

import asyncio
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.auth.principal import Principal
from app.errors import BerthError
from app.mcp.caller import remember_caller

Authenticate = Callable[[Request], Awaitable[Principal]]
"""Resolves the caller of one request, or raises a BerthError (Unauthorized, ...). It runs on the
event loop: a blocking lookup belongs in a worker thread (`starlette.concurrency.run_in_threadpool`)."""

_Guard = tuple[TransportSecuritySettings, TransportSecurityMiddleware]

# A per-request manager logs its start and stop, and the transport its termination, at INFO on
# every request; berth's access log already has one line per request.
for _chatty in ("mcp.server.streamable_http_manager", "mcp.server.streamable_http"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)


class StatelessMCPEndpoint:
    """An ASGI app answering MCP requests for one server; safe on every request and invocation."""

    def __init__(
        self,
        server: MCPServer,
        *,
        authenticate: Authenticate,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str] = (),
    ):
        self._authenticate = authenticate
        self._security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(allowed_hosts),
            allowed_origins=list(allowed_origins),
        )
        self._guards: dict[str | None, _Guard] = {None: (self._security, TransportSecurityMiddleware(self._security))}
        # The low-level server behind an MCPServer is public only as the `app` of the session
        # manager that `streamable_http_app()` builds; that manager itself is never run.
        server.streamable_http_app(stateless_http=True, json_response=True, transport_security=self._security)
        self._managers = _RunningManagers(server.session_manager.app)

    def _guard(self, scope: Scope) -> _Guard:
        """The allowlist for this request: the configured one, with the gateway's domain if any."""
        domain = _gateway_domain(scope)
        found = self._guards.get(domain)
        if found is None:
            if len(self._guards) > _GATEWAY_DOMAINS_KEPT:  # a function serves a handful of domains
                self._guards = {None: self._guards[None]}
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=[*self._security.allowed_hosts, *allowed_hosts_for([str(domain)])],
                allowed_origins=[*self._security.allowed_origins, *allowed_origins_for([f"https://{domain}"])],
            )
            found = self._guards[domain] = (security, TransportSecurityMiddleware(security))
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        security, rebinding_guard = self._guard(scope)
        refused = await rebinding_guard.validate_request(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        if request.method != "POST":
            await _post_only(request.method)(scope, receive, send)
            return
        try:
            caller = await self._authenticate(request)
        except BerthError as refused_caller:
            await _json_rpc_error(request, refused_caller)(scope, receive, send)
            return
        remember_caller(scope, caller)
        manager = await self._managers.running(security)
        await manager.handle_request(scope, receive, send)


class _RunningManagers:
    """Session managers entered and held open by tasks of their own: one per event loop (and
    allowlist: the SDK's transport checks the request's Host and Origin again, with its manager's).
    A loop that is gone takes its managers with it."""

    def __init__(self, lowlevel: Any):
        self._lowlevel = lowlevel
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Held]] = (
            weakref.WeakKeyDictionary())

    async def running(self, security: TransportSecuritySettings) -> StreamableHTTPSessionManager:
        loop = asyncio.get_running_loop()
        held = self._by_loop.setdefault(loop, {})
        found = held.get(id(security))
        if found is None or found.holder.done():
            if len(held) > _GATEWAY_DOMAINS_KEPT:
                for stale in held.values():
                    stale.holder.cancel()
                held.clear()
            manager = StreamableHTTPSessionManager(app=self._lowlevel, json_response=True, stateless=True,
                                                   security_settings=security)
            found = held[id(security)] = _Held(manager, loop)
        await found.entered
        return found.manager


class _Held:
    """A manager and the task holding it entered; `entered` resolves once it is (or with why not)."""

    def __init__(self, manager: StreamableHTTPSessionManager, loop: asyncio.AbstractEventLoop):
        self.manager = manager
        self.entered: asyncio.Future[None] = loop.create_future()
        self.holder = loop.create_task(self._hold(), name="mcp-session-manager")

    async def _hold(self) -> None:
        try:
            async with self.manager.run():
                self.entered.set_result(None)
                await asyncio.Event().wait()  # until the loop ends (or the task is cancelled)
        except BaseException as failed:
            if not self.entered.done():
                self.entered.set_exception(failed if isinstance(failed, Exception) else RuntimeError(str(failed)))
            raise


_GATEWAY_DOMAINS_KEPT = 16
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def _gateway_domain(scope: Scope) -> str | None:
    """The domain API Gateway received this request on, from the Lambda event (Mangum puts it in
    the scope; a request over a socket has none, and no client can add one)."""
    event = scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    domain = context.get("domainName") if isinstance(context, dict) else None
    return domain.lower() if isinstance(domain, str) and _DOMAIN_NAME.match(domain) else None


def _post_only(method: str) -> JSONResponse:
    """405 in the SDK's own shape: a JSON-RPC error without an id."""
    error = {"code": INVALID_REQUEST, "message": f"Method Not Allowed: {method}; this endpoint answers POST only"}
    return JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=405, headers={"Allow": "POST"})


def _json_rpc_error(request: Request, error: BerthError) -> JSONResponse:
    """A refused caller, answered so that MCP clients show the message: a JSON-RPC error body at
    the error's HTTP status (berth's `{"success": false}` shape is for the REST routes)."""
    code = INVALID_REQUEST if error.status < 500 else INTERNAL_ERROR
    data = {"status": error.status, "request_id": request.scope.get("state", {}).get("request_id", "-")}
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": error.message, "data": data}}
    headers = {"WWW-Authenticate": 'Bearer realm="berth"'} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, headers=headers)


def mcp_router(endpoint: StatelessMCPEndpoint, path: str = "/mcp") -> APIRouter:
    """A router serving `endpoint` at exactly `path`, for `app.include_router` (or a route group).

    A `Route`, not a `Mount`: a mount at /mcp answers a POST to /mcp with a 307 to /mcp/, which
    clients do not follow for a POST. Every method reaches the endpoint, which answers 405 itself.
    """
    return APIRouter(routes=[Route(path, endpoint=endpoint)])


def allowed_hosts_for(urls: Sequence[str]) -> list[str]:
    """The Host header values a deployment answers to, from the URLs clients use to reach it.

    Each URL allows its host name with and without a port (`api.example.com`,
    `api.example.com:*`); Host headers carry the port only when it is not the scheme's default.
    """
    return list(dict.fromkeys(allowed for url in urls for allowed in _with_any_port(_host(url))))


def allowed_origins_for(urls: Sequence[str]) -> list[str]:
    """The Origin header values browsers send from pages served at `urls` (scheme and host)."""
    origins = []
    for url in urls:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"an origin needs an http(s) URL: {url!r}")
        origins += _with_any_port(f"{scheme}://{_host(url)}")
    return list(dict.fromkeys(origins))


def _host(url: str) -> str:
    name = urlsplit(url if "://" in url else f"//{url}").hostname
    if not name:
        raise ValueError(f"not a URL or host name: {url!r}")
    return f"[{name}]" if ":" in name else name  # an IPv6 literal, as the headers write it


def _with_any_port(value: str) -> list[str]:
    return [value, f"{value}:*"]
