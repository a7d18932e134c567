"""Bodies of the runtime-management routes (the runtime protocol itself is in app.contract.messages)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain.runtimes import JoinToken, Runtime

_PUBLIC_FIELDS = ("runtime_id", "name", "shared", "capabilities", "runtimes", "labels", "gpus",
                  "max_concurrent_jobs", "active_jobs", "free_disk_bytes", "software_version", "queue_mode",
                  "registered_at", "last_heartbeat_at")
_JOIN_TOKEN_FIELDS = ("token_id", "name", "prefix", "uses", "uses_left", "shared", "labels", "created_at",
                      "expires_at")


def runtime_view(runtime: Runtime, status: str) -> dict[str, Any]:
    """A runtime as a workspace sees it (no queue URLs, control URL or token digest), with its effective status."""
    return {**{field: getattr(runtime, field) for field in _PUBLIC_FIELDS}, "status": status}


def join_token_view(token: JoinToken) -> dict[str, Any]:
    return {field: getattr(token, field) for field in _JOIN_TOKEN_FIELDS}


class JoinTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="join token", min_length=1, max_length=100)
    uses: int = Field(default=1, ge=1, le=1000, description="How many runtimes may register with it")
    ttl_seconds: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    shared: bool = Field(default=False, description="Operator only: runtimes that serve every workspace")
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)


class JoinTokenCreated(BaseModel):
    token: str = Field(description="The secret: shown only in this response")
    join_token: dict


class JoinTokenDeleted(BaseModel):
    ok: bool = True
    token_id: str


class RuntimeDeleted(BaseModel):
    ok: bool = True
    runtime_id: str
    jobs_requeued: int = Field(description="unfinished jobs sent to be dispatched on another runtime")
    jobs_ended: int = Field(description="jobs that could only run there (a started sandbox, a call on one), ended")
