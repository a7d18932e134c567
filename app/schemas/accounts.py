"""Request and response bodies of the accounts and API-key routes."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from app.contract.bodies import NOT_BLANK, JsonBody
from app.domain.accounts import ApiKey, User, Workspace

# A name must show something besides white space (the service strips names).
VISIBLE = NOT_BLANK


class SignupRequest(JsonBody):
    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    email: EmailStr
    password: str = Field(min_length=6, max_length=256)
    workspace: str | None = Field(default=None, min_length=1, max_length=100, pattern=VISIBLE)


class LoginRequest(JsonBody):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class ForgotRequest(JsonBody):
    email: EmailStr


class ResetRequest(JsonBody):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=6, max_length=256)


class VerifyRequest(JsonBody):
    token: str = Field(min_length=1, max_length=200)


class AuthUser(BaseModel):
    id: str
    name: str
    email: str
    role: str
    workspace: str
    workspace_slug: str
    workspace_id: str
    email_verified: bool = False

    @classmethod
    def of(cls, user: User, workspace: Workspace) -> "AuthUser":
        return cls(id=user.user_id, name=user.name, email=user.email, role=user.role, workspace=workspace.name,
                   workspace_slug=workspace.slug, workspace_id=workspace.workspace_id,
                   email_verified=user.email_verified)


class AuthResult(BaseModel):
    success: bool = True
    token: str = Field(description="Session bearer token")
    user: AuthUser
    expires_at: str


class MeResponse(BaseModel):
    success: bool = True
    user: AuthUser
    auth: Literal["session", "api_key"]


class OkResponse(BaseModel):
    success: bool = True
    ok: bool = True
    message: str = ""


class LogoutResponse(BaseModel):
    success: bool = True
    ok: bool = True
    sessions_ended: int


class ApiKeyCreate(JsonBody):
    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    tier: Literal["read", "standard", "admin"] = "standard"
    expires_at: datetime | None = Field(default=None, description="ISO 8601, in the future (400 otherwise); omit "
                                                                  "for a key that does not expire")


class ApiKeyView(BaseModel):
    id: str
    name: str
    tier: str
    prefix: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    created_by: str = ""

    @classmethod
    def of(cls, key: ApiKey) -> "ApiKeyView":
        return cls(id=key.key_id, name=key.name, tier=key.tier, prefix=key.prefix, created_at=key.created_at,
                   expires_at=key.expires_at, revoked_at=key.revoked_at, created_by=key.created_by)


class ApiKeyCreated(BaseModel):
    success: bool = True
    key: str = Field(description="The secret: shown only in this response")
    api_key: ApiKeyView


class ApiKeyList(BaseModel):
    success: bool = True
    keys: list[ApiKeyView]
    next_cursor: str | None = None
