"""Routes for sandboxes: `/v1/sandbox/sessions*`, and `/api/sandboxes` for the listing (the
runtime API has none)."""

from typing import Any, Literal, TypedDict

from berth_cli.client.http import Http, segment
from berth_cli.client.jobs import CancelResult, WaitingFor

# The API bounds one readiness wait (`GET .../tools?wait_seconds=`) to this many seconds.
MAX_WAIT_SECONDS = 25.0


class SandboxCreated(TypedDict):
    session_id: str
    job_id: str
    status: str
    expires_at: str
    events_url: str
    waiting_for: WaitingFor | None
    warnings: list[str]


class Sandbox(TypedDict):
    id: str
    session_id: str
    job_id: str
    type: str
    status: str
    state: Literal["starting", "running", "stopping", "stopped", "failed", "ended"]
    runtime: str
    transport: str
    start_command: str
    env: list[str]
    labels: dict[str, str]
    entity_id: str | None
    runtime_id: str | None
    isolation: str | None
    created_at: str
    expires_at: str
    error: str | None
    events_url: str


class SandboxPage(TypedDict):
    success: bool
    sandboxes: list[Sandbox]
    next_cursor: str | None


class Tool(TypedDict):
    name: str
    description: str
    input_schema: dict[str, Any]


class ToolList(TypedDict):
    tools: list[Tool]


class ToolCallResult(TypedDict):
    ok: bool
    result: dict[str, Any]


class SandboxesApi:
    def __init__(self, http: Http):
        self._http = http

    def create(self, start_command: str, *, env: dict[str, str] | None = None, ttl_seconds: int | None = None,
               runtime: str | None = None, transport: str | None = None, wait: bool = False) -> SandboxCreated:
        """`wait`: accepted even when no registered runtime runs sandboxes (it waits for one)."""
        body = {"start_command": start_command, "env": env or {}, "ttl_seconds": ttl_seconds, "runtime": runtime,
                "transport": transport, "wait": wait or None}
        return self._http.request("POST", "/v1/sandbox/sessions",
                                  json={name: value for name, value in body.items() if value is not None})

    def page(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> SandboxPage:
        return self._http.request("GET", "/api/sandboxes", params={"status": status, "limit": limit, "cursor": cursor})

    def get(self, session_id: str) -> Sandbox:
        return self._http.request("GET", f"/v1/sandbox/sessions/{segment(session_id)}")

    def tools(self, session_id: str, *, wait_seconds: float = 0) -> ToolList:
        """With `wait_seconds` (at most MAX_WAIT_SECONDS), the API first waits for a starting
        server to come up."""
        return self._http.request("GET", f"/v1/sandbox/sessions/{segment(session_id)}/tools",
                                  params={"wait_seconds": wait_seconds or None}, timeout=wait_seconds + 30)

    def call(self, session_id: str, tool: str, arguments: dict[str, Any]) -> ToolCallResult:
        return self._http.request("POST", f"/v1/sandbox/sessions/{segment(session_id)}/tools/call",
                                  json={"name": tool, "arguments": arguments})

    def delete(self, session_id: str) -> CancelResult:
        return self._http.request("DELETE", f"/v1/sandbox/sessions/{segment(session_id)}")
