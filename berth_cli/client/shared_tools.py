"""Routes for shared tools: `/api/shared-tools` (each user connects their own account, OAuth)."""

from typing import Literal, TypedDict

from berth_cli.client.http import Http, segment


class Connection(TypedDict):
    connected: bool
    expired: bool | None
    refreshable: bool
    scopes: list[str]
    connected_at: str | None
    refreshed_at: str | None
    expires_at: str | None


class SharedTool(TypedDict):
    id: str
    title: str
    description: str
    scopes: list[str]
    client_registered: bool
    connection: Connection


class SharedToolList(TypedDict):
    success: bool
    user_id: str
    shared_tools: list[SharedTool]


class SignInLink(TypedDict):
    success: bool
    tool_id: str
    user_id: str
    authorization_url: str
    expires_at: str


class ConnectionStatus(Connection):
    success: bool
    tool_id: str
    user_id: str


class UserEmail(TypedDict):
    success: bool
    tool_id: str
    user_id: str
    email: str
    source: Literal["id_token", "userinfo"]


class Disconnection(TypedDict):
    success: bool
    tool_id: str
    user_id: str
    revoked_at_provider: bool
    detail: str


def _user(user_id: str | None) -> dict[str, str] | None:
    return {"X-User-Id": user_id} if user_id else None


class SharedToolsApi:
    """`user_id` is the user an API key acts for (X-User-Id); without it, the key's own user."""

    def __init__(self, http: Http):
        self._http = http

    def _path(self, tool_id: str, rest: str) -> str:
        # A tool id is a catalog name with one slash: quoted, it stays one path segment.
        return f"/api/shared-tools/{segment(tool_id)}/{rest}"

    def list(self, user_id: str | None = None) -> SharedToolList:
        return self._http.request("GET", "/api/shared-tools", headers=_user(user_id))

    def begin(self, tool_id: str, user_id: str | None = None) -> SignInLink:
        return self._http.request("POST", self._path(tool_id, "oauth/state"), headers=_user(user_id))

    def status(self, tool_id: str, user_id: str | None = None) -> ConnectionStatus:
        return self._http.request("GET", self._path(tool_id, "oauth/status"), headers=_user(user_id))

    def user_email(self, tool_id: str, user_id: str | None = None) -> UserEmail:
        return self._http.request("GET", self._path(tool_id, "oauth/user-email"), headers=_user(user_id))

    def disconnect(self, tool_id: str, user_id: str | None = None) -> Disconnection:
        return self._http.request("DELETE", self._path(tool_id, "oauth"), headers=_user(user_id))
