"""Bodies and views of the shared-tool routes (`/api/shared-tools`, `/api/auth/callback`) and of
the `list_shared_tools` MCP tool: the tools, one user's connection of each, the workspace's client
registration. Tokens and the client secret never appear; the secret only as a hint."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.catalog.servers import OAuthProvider, ServerDocument
from app.clock import iso
from app.domain.shared_tools import Grant, OAuthClient

TOOL_ID_PATTERN = r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$"  # a catalog entry's name (server.json)
_URL = Field(default=None, min_length=8, max_length=2000)


class ConnectionView(BaseModel):
    connected: bool = Field(description="the user has granted access and berth holds the grant")
    expired: bool | None = Field(description="the access token has expired (berth refreshes it on the next use "
                                             "when `refreshable`); null when not connected")
    refreshable: bool = False
    scopes: list[str] = Field(default_factory=list, description="what the grant allows")
    connected_at: str | None = None
    refreshed_at: str | None = None
    expires_at: str | None = Field(default=None, description="when the access token expires")

    @classmethod
    def of(cls, grant: Grant | None, now: float) -> "ConnectionView":
        if grant is None:
            return cls(connected=False, expired=None)
        return cls(connected=True, expired=grant.expired(now), refreshable=grant.refreshable, scopes=grant.scopes,
                   connected_at=grant.connected_at, refreshed_at=grant.refreshed_at,
                   expires_at=iso(grant.expires_at) if grant.expires_at is not None else None)


class SharedToolView(BaseModel):
    id: str = Field(description="the catalog entry's name; the `toolId` of the routes")
    title: str
    description: str
    scopes: list[str] = Field(description="what a sign-in asks for")
    client_registered: bool = Field(description="the workspace has registered its OAuth client for it (users "
                                                "can connect only then)")
    connection: ConnectionView = Field(description="the user's connection")

    @classmethod
    def of(cls, document: ServerDocument, oauth: OAuthProvider, client: OAuthClient | None, grant: Grant | None,
           now: float) -> "SharedToolView":
        return cls(id=document.name, title=document.display_name, description=document.description,
                   scopes=oauth.scopes, client_registered=client is not None, connection=ConnectionView.of(grant, now))


class SharedToolList(BaseModel):
    success: bool = True
    user_id: str = Field(description="whose connections these are")
    shared_tools: list[SharedToolView]


class SignInLink(BaseModel):
    success: bool = True
    tool_id: str
    user_id: str
    authorization_url: str = Field(description="send the user here; the provider returns them to berth's "
                                               "/api/auth/callback")
    expires_at: str = Field(description="the link works once, until then")


class ConnectionStatus(ConnectionView):
    success: bool = True
    tool_id: str
    user_id: str


class UserEmail(BaseModel):
    success: bool = True
    tool_id: str
    user_id: str
    email: str
    source: Literal["id_token", "userinfo"] = Field(description="a verified id token, or the provider's "
                                                                "userinfo endpoint")


class Disconnection(BaseModel):
    success: bool = True
    tool_id: str
    user_id: str
    revoked_at_provider: bool
    detail: str


class OAuthClientRequest(BaseModel):
    """The workspace's registration with the tool's provider; the endpoints and scopes override the
    catalog entry's (a self-hosted provider), the rest comes from it."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=256)
    client_secret: str = Field(min_length=1, max_length=1024, description="sealed at once, never shown again")
    authorization_endpoint: str | None = _URL
    token_endpoint: str | None = _URL
    userinfo_endpoint: str | None = _URL
    revocation_endpoint: str | None = _URL
    issuer: str | None = _URL
    jwks_uri: str | None = _URL
    scopes: list[str] | None = Field(default=None, max_length=50)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] | None = None
    extra_authorize_params: dict[str, str] | None = Field(default=None, max_length=20)

    def provider(self) -> dict[str, Any]:
        """What the registration sets over the catalog's provider."""
        return self.model_dump(exclude={"client_id", "client_secret"}, exclude_none=True)


class OAuthClientView(BaseModel):
    success: bool = True
    tool_id: str
    client_id: str
    secret_hint: str = Field(description="the client secret's last characters, or `set`")
    provider: dict[str, Any] = Field(description="the provider as sign-ins use it: the catalog's, with the "
                                                 "registration's endpoints and scopes over it")
    redirect_uri: str = Field(description="register this as the client's redirect URI at the provider")
    updated_at: str

    @classmethod
    def of(cls, client: OAuthClient, oauth: OAuthProvider, redirect_uri: str) -> "OAuthClientView":
        public = oauth.model_dump(exclude={"token_input"}, exclude_none=True)
        return cls(tool_id=client.tool_id, client_id=client.client_id, secret_hint=client.secret_hint,
                   provider={**public, **client.provider}, redirect_uri=redirect_uri, updated_at=client.updated_at)
