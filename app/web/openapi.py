"""How routes document the errors they answer with, in berth's one error shape.

A route lists the statuses it can return besides success, `responses=errors(404, 409)`, and the
OpenAPI document then describes each with `ErrorBody` — the shape every error has on both surfaces.
"""

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    success: bool = Field(False, description="always false for an error")
    error: str = Field(description="what went wrong, in words a person can act on")
    status: int = Field(description="the HTTP status, repeated")
    request_id: str = Field(description="quote it when reporting a problem")
    kind: str | None = Field(None, description="a machine-readable kind, where a surface defines them "
                                                 "(e.g. infra SSH: validation_failed, approval_required, denied)")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}
