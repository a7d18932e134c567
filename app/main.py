"""The FastAPI application: routers for both surfaces over the same domain services."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import __version__
from app.errors import BerthError
from app.logs import configure as configure_logging
from app.logs import get_logger
from app.middleware import RequestContextMiddleware
from app.routers import (api_keys, api_runtime, api_sandboxes, docs, health, v1_auth, v1_cloud, v1_jobs,
                         v1_matrixshell, v1_sandbox, v1_system)
from app.settings import get_settings

logger = get_logger("berth.app")


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "-")


def _error(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": message, "status": status, "request_id": _request_id(request)},
        status_code=status,
    )


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
        return _error(request, error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        status, message = _describe_validation(error)
        return _error(request, status, message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if error.status_code == 404 and error.detail == "Not Found":
            return _error(request, 404, f"no route {request.method} {request.url.path}")
        if error.status_code == 405:
            return _error(request, 405, f"method {request.method} is not allowed on {request.url.path}")
        return _error(request, error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception):
        logger.exception("unhandled error")
        return _error(request, 500, "internal error; quote the request id when reporting it")


def create_app() -> FastAPI:
    settings = get_settings()
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
    for router in (health.router, v1_system.router, v1_auth.router, v1_jobs.router, v1_cloud.router,
                   v1_sandbox.router, v1_matrixshell.router, api_keys.router, api_sandboxes.router,
                   api_runtime.router, docs.router):
        app.include_router(router)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
