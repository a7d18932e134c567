"""Routes for accounts and API keys: `/v1/auth/*`, `/api/auth/keys*`."""

from typing import Literal, TypedDict

from berth_cli.client.http import Http, segment

Tier = Literal["read", "standard", "admin"]


class AuthUser(TypedDict):
    id: str
    name: str
    email: str
    role: str
    workspace: str
    workspace_slug: str
    workspace_id: str
    email_verified: bool


class AuthResult(TypedDict):
    token: str
    user: AuthUser
    expires_at: str


class Me(TypedDict):
    user: AuthUser
    auth: Literal["session", "api_key"]


class ApiKeyView(TypedDict):
    id: str
    name: str
    tier: Tier
    prefix: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    created_by: str


class ApiKeyCreated(TypedDict):
    success: bool
    key: str
    api_key: ApiKeyView


class LogoutResult(TypedDict):
    ok: bool
    sessions_ended: int


class AccountsApi:
    def __init__(self, http: Http):
        self._http = http

    def login(self, email: str, password: str) -> AuthResult:
        return self._http.request("POST", "/v1/auth/login", json={"email": email, "password": password})

    def me(self) -> Me:
        return self._http.request("GET", "/v1/auth/me")

    def logout(self) -> LogoutResult:
        """Ends the session whose token this client holds."""
        return self._http.request("POST", "/v1/auth/logout")

    def generate_key(self, name: str, tier: Tier) -> ApiKeyCreated:
        return self._http.request("POST", "/api/auth/keys/generate", json={"name": name, "tier": tier})

    def revoke_key(self, key_id: str) -> ApiKeyView:
        return self._http.request("DELETE", f"/api/auth/keys/{segment(key_id)}")
