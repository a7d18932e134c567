"""The FastAPI application: routers for both surfaces over the same domain services."""

import importlib
import re
import threading
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import __version__, composition
from app.errors import BerthError, error_body, openai_error_body
from app.logs import configure as configure_logging
from app.logs import get_logger
from app.routers import docs, liveness
from app.web.middleware import RequestContextMiddleware
from app.web.openapi import api_routes, build_document

logger = get_logger("berth.app")
OPENAI_PREFIX = "/openai/v1"


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "-")


def _error(request: Request, status: int, message: str, kind: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    # The OpenAI-compatible endpoint answers in OpenAI's error shape, which its clients read.
    if _under(request.url.path, OPENAI_PREFIX):
        return JSONResponse(openai_error_body(status, message, _request_id(request)), status_code=status,
                            headers=headers)
    return JSONResponse(error_body(status, message, _request_id(request), kind), status_code=status, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for this path. Starlette's own 405 names only the
    first route that matched the path, and berth declares one route per method."""
    path = request.url.path
    matching = [route for route in api_routes(request.app) if route.path_regex.match(path)]
    # A path the document names literally (`/api/auth/keys/generate`) is that path, not an
    # instance of a template beside it (`/api/auth/keys/{key_id}`).
    # Likewise `/api/marketplace/tools/{entry_id}/install` is that route, not an entry id ending in
    # `/install` (ids hold a `/`): of the templates with fewest parameters, the one naming the most.
    fewest = min((len(route.param_convertors) for route in matching), default=0)
    closest = [route for route in matching if len(route.param_convertors) == fewest]
    most = max((_literal_length(route.path_format) for route in closest), default=0)
    return sorted({method for route in closest if _literal_length(route.path_format) == most
                   for method in route.methods or ()})


def _literal_length(path_format: str | None) -> int:
    """How much of a path template is fixed text (its parameters left out)."""
    return len(re.sub(r"\{[^}]*\}", "", path_format or ""))


def _describe_validation(error: RequestValidationError) -> tuple[int, str]:
    problems = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return 400, f"malformed JSON body: {item.get('ctx', {}).get('error', 'could not parse')}"
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        problems.append(f"{location}: {item.get('msg', 'invalid')}")
    return 422, "invalid request: " + "; ".join(problems)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BerthError)
    async def berth_error(request: Request, error: BerthError):
        return _error(request, error.status, error.message, error.kind, error.headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        status, message = _describe_validation(error)
        return _error(request, status, message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if error.status_code == 404 and error.detail == "Not Found":
            return _error(request, 404, f"no route {request.method} {request.url.path}")
        if error.status_code == 405:
            allowed = _allowed_methods(request)
            return _error(request, 405, f"method {request.method} is not allowed on {request.url.path}; "
                                        f"use {', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
        return _error(request, error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception):
        logger.exception("unhandled error")
        return _error(request, 500, "internal error; quote the request id when reporting it")


# Each route group is imported and included on the first request under one of its prefixes, so a
# cold Lambda answering /v1/health builds only the liveness routes (docs/decisions.md, "Route
# groups load on first use"). The OpenAPI document and its UI load every group first.
ROUTE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("app.routers.v1_auth", ("/v1/auth",)),
    ("app.routers.v1_jobs", ("/v1/jobs",)),
    ("app.routers.v1_cloud", ("/v1/cloud",)),
    ("app.routers.v1_sandbox", ("/v1/sandbox",)),
    ("app.routers.v1_matrixshell", ("/v1/matrixshell",)),
    ("app.routers.v1_system", ("/v1/ready", "/v1/policies", "/v1/system", "/v1/capabilities", "/v1/runtimes")),
    ("app.routers.status", ("/status",)),
    ("app.routers.api_keys", ("/api/auth/keys",)),
    ("app.routers.api_sandboxes", ("/api/sandboxes", "/api/containers")),
    ("app.routers.api_runtime", ("/api/runtime",)),
    ("app.routers.pages", ("/verify", "/reset")),
    ("app.routers.v1_models", ("/v1/model-sources", "/v1/model-profiles", "/v1/model-installations")),
    ("app.routers.v1_providers", ("/v1/cloud/providers",)),
    ("app.routers.v1_catalog", ("/v1/catalog",)),
    ("app.routers.openai_compat", (OPENAI_PREFIX,)),
    ("app.routers.api_marketplace", ("/api/marketplace", "/api/registry")),
    ("app.routers.api_installations", ("/api/installations",)),
    ("app.routers.api_shared_tools", ("/api/shared-tools", "/api/auth/callback")),
    ("app.routers.api_integrations", ("/api/integrations",)),
    ("app.routers.mcp", ("/mcp",)),
    ("app.routers.api_infra_ssh", ("/api/infra/ssh",)),
)
_EVERY_GROUP = ("/openapi.json", "/api-docs")


class RouteGroups:
    """Includes route groups into the app the first time a request needs them."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.loaded: set[str] = set()
        self._lock = threading.Lock()
        self._unloaded = self._prefixes_to_load()

    def load_all(self) -> None:
        self.ensure_for(_EVERY_GROUP[0])

    def ensure_for(self, path: str) -> None:
        # Every request asks, so the answer for a path whose groups are in is one regex match.
        if self._unloaded is None or not self._unloaded.match(path):
            return
        every = any(_under(path, prefix) for prefix in _EVERY_GROUP)
        for module, prefixes in ROUTE_GROUPS:
            if module not in self.loaded and (every or any(_under(path, p) for p in prefixes)):
                self._include(module)

    def _include(self, module: str) -> None:
        with self._lock:
            if module not in self.loaded:
                self.app.include_router(importlib.import_module(module).router)
                self.loaded.add(module)
                self._unloaded = self._prefixes_to_load()

    def _prefixes_to_load(self) -> re.Pattern[str] | None:
        """Paths under a group not yet included (or under the document that includes them all)."""
        prefixes = [prefix for module, owned in ROUTE_GROUPS if module not in self.loaded for prefix in owned]
        if not prefixes:
            return None
        return re.compile("(?:" + "|".join(map(re.escape, [*prefixes, *_EVERY_GROUP])) + ")(?:/|$)")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class RouteGroupLoader:
    """ASGI middleware: make sure the request's route group is included before routing."""

    def __init__(self, app, groups: RouteGroups):
        self.app = app
        self.groups = groups

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.groups.ensure_for(scope["path"])
        await self.app(scope, receive, send)


def create_app() -> FastAPI:
    settings = composition.services().settings
    configure_logging()
    app = FastAPI(
        title="berth",
        version=__version__,
        summary="Serverless control plane for MCP tool sandboxes and model serving on GPU fleets.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    _install_error_handlers(app)
    app.include_router(liveness.router)
    app.include_router(docs.router)
    app.state.route_groups = RouteGroups(app)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.state.route_groups.load_all()
            app.openapi_schema = build_document(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(RouteGroupLoader, groups=app.state.route_groups)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
