"""How routes document the errors they answer with, in berth's one error shape.

Most of what a route can answer besides success follows from how it is declared, so the OpenAPI
document derives it (`derived_errors`):

- a dependency marked with `@answers(...)` (the caller dependencies in `app.web.deps`: 401, and
  403 where a key tier is needed) adds its statuses to every route that uses it, however deep;
- a request body adds 400 (malformed JSON), 413 (over the body limit) and 422 (invalid);
- any parameter or body adds 422; a path parameter names a resource, so 404.

A route adds its own with `responses=errors(409, 504)`. Every one is described with `ErrorBody`,
the shape every error has on both surfaces; FastAPI's `{"detail": [...]}` 422 is replaced, since
berth never answers with it. Limits that come from the policy in force (app.schemas.limits) are
written into the document from the settings, so a schema-valid request is never refused for a
constraint the document does not state.
"""

from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, Field

from app.schemas.limits import POLICY_MAXIMUM

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.settings import Settings

_F = TypeVar("_F", bound=Callable[..., Any])
_ANSWERS: dict[Callable[..., Any], tuple[int, ...]] = {}
_REF = "#/components/schemas/ErrorBody"
# What FastAPI documents on its own for a route with parameters, and berth never sends.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ErrorBody(BaseModel):
    success: bool = Field(False, description="always false for an error")
    error: str = Field(description="what went wrong, in words a person can act on")
    status: int = Field(description="the HTTP status, repeated")
    request_id: str = Field(description="quote it when reporting a problem")
    kind: str | None = Field(None, description="a machine-readable kind, where a surface defines them "
                                                 "(e.g. infra SSH: validation_failed, approval_required, denied)")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error statuses a route answers with beyond the derived ones."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}


def answers(*statuses: int) -> Callable[[_F], _F]:
    """Mark a dependency with the error statuses it can answer: every route using it documents them."""
    def mark(dependency: _F) -> _F:
        _ANSWERS[dependency] = statuses
        return dependency
    return mark


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def api_routes(app: "FastAPI") -> Iterator[RouteContext]:
    """Every API route of the app as it is served (full path, the routers' dependencies included)."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def derived_errors(route: APIRoute | RouteContext) -> set[int]:
    """The error statuses that follow from the route's declaration (see the module docstring)."""
    dependants = [route.dependant, *_dependencies(route.dependant)]
    statuses = {status for dependant in dependants if dependant.call is not None
                for status in _ANSWERS.get(dependant.call, ())}
    if route.body_field is not None:
        statuses.update((400, 413, 422))
    if any(d.path_params or d.query_params or d.header_params or d.cookie_params for d in dependants):
        statuses.add(422)
    if any(dependant.path_params for dependant in dependants):
        statuses.add(404)
    return statuses


def _error_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {"description": description or HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": {"$ref": _REF}}}}


def _document_errors(document: dict[str, Any], route: RouteContext) -> None:
    # A route may document an error status with a body of its own (readiness: the report itself;
    # the OAuth callback: a page for a person's browser).
    own_shape = {int(code) for code, response in route.responses.items()
                 if response.get("model") not in (None, ErrorBody)
                 or set(response.get("content", {})) - {"application/json"}}
    declared = {int(code) for code in route.responses if str(code).isdigit() and int(code) >= 400} - own_shape
    for method in route.methods or ():
        operation = document["paths"].get(route.path_format, {}).get(method.lower())
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        responses.pop("422", None)  # FastAPI's; put back below in berth's shape where it applies
        for status in sorted((derived_errors(route) | declared) - own_shape):
            described = route.responses.get(status, {}).get("description")
            responses[str(status)] = _error_response(status, described)


def _parameters_without_null(document: dict[str, Any]) -> None:
    """A path, query or header parameter is text or absent, never null: `str | None = None` means
    "may be left out", which `required: false` already says."""
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                choices = [choice for choice in schema.get("anyOf", []) if choice.get("type") != "null"]
                if "anyOf" in schema and len(choices) == 1:
                    del schema["anyOf"]
                    schema.update(choices[0])


def _apply_policy_limits(node: Any, settings: "Settings") -> None:
    if isinstance(node, dict):
        setting = node.pop(POLICY_MAXIMUM, None)
        if setting is not None:
            node["maximum"] = getattr(settings, setting)
        for value in node.values():
            _apply_policy_limits(value, settings)
    elif isinstance(node, list):
        for value in node:
            _apply_policy_limits(value, settings)


def build_document(app: "FastAPI", settings: "Settings") -> dict[str, Any]:
    """The OpenAPI document of every route, with every error each can answer in berth's shape."""
    document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for route in api_routes(app):
        if route.include_in_schema:
            _document_errors(document, route)
    _parameters_without_null(document)
    _apply_policy_limits(document, settings)
    return document
