"""Routes of installations: `/api/installations*` (read, change, delete, files) and the tools of
an installation's server."""

from pathlib import Path
from typing import Any, Literal, TypedDict

from berth_cli.client.http import Http, segment
from berth_cli.client.sandboxes import MAX_WAIT_SECONDS, ToolCallResult, ToolList


class SecretHint(TypedDict):
    name: str
    hint: str


class InstalledFile(TypedDict):
    name: str
    size_bytes: int
    sha256: str
    uploaded_at: str
    path: str


class Installation(TypedDict):
    id: str
    entry_id: str
    entry_version: str
    origin: str
    title: str
    kind: Literal["package", "remote"]
    scope: Literal["workspace", "user"]
    user_id: str | None
    state: Literal["ready", "needs_oauth"]
    pending: list[str]
    next: str
    config: dict[str, str]
    secrets: list[SecretHint]
    files: list[InstalledFile]
    files_dir: str
    sandbox_id: str | None
    last_error: str | None
    created_at: str
    updated_at: str


class InstallationChanged(Installation):
    restarted: bool


class InstallationPage(TypedDict):
    success: bool
    installations: list[Installation]
    next_cursor: str | None


class Deleted(TypedDict):
    success: bool
    id: str
    deleted: bool


class InstallationsApi:
    def __init__(self, http: Http):
        self._http = http

    def page(self, *, user_id: str | None = None, limit: int | None = None, cursor: str | None = None
             ) -> InstallationPage:
        return self._http.request("GET", "/api/installations", params={"user_id": user_id, "limit": limit,
                                                                       "cursor": cursor})

    def get(self, installation_id: str) -> Installation:
        return self._http.request("GET", f"/api/installations/{segment(installation_id)}")

    def update(self, installation_id: str, config: dict[str, str | None]) -> InstallationChanged:
        return self._http.request("PATCH", f"/api/installations/{segment(installation_id)}", json={"config": config})

    def delete(self, installation_id: str) -> Deleted:
        return self._http.request("DELETE", f"/api/installations/{segment(installation_id)}")

    def upload(self, installation_id: str, paths: list[Path]) -> InstallationChanged:
        parts = [("files", (path.name, path.read_bytes(), "application/octet-stream")) for path in paths]
        return self._http.request("POST", f"/api/installations/{segment(installation_id)}/files", files=parts)

    def tools(self, installation_id: str, *, wait_seconds: float = MAX_WAIT_SECONDS) -> ToolList:
        """Starts the server when none runs, waiting at most `wait_seconds` (25 at most) for it."""
        return self._http.request("GET", f"/api/installations/{segment(installation_id)}/tools",
                                  params={"wait_seconds": wait_seconds}, timeout=wait_seconds + 30)

    def call(self, installation_id: str, tool: str, arguments: dict[str, Any]) -> ToolCallResult:
        return self._http.request("POST", f"/api/installations/{segment(installation_id)}/tools/call",
                                  json={"name": tool, "arguments": arguments}, timeout=60)
