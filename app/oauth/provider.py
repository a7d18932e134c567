"""An OAuth 2 provider as a shared tool's catalog entry (or its installation) describes it."""

from typing import Literal, Self

from authlib.common.security import is_secure_transport
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ProviderSettings(BaseModel):
    """Endpoints and client credentials of one provider.

    Endpoints must be HTTPS (plain HTTP only on loopback, for a local provider). `issuer` and
    `jwks_uri` together let an id token's email be trusted: its signature is checked against the
    provider's published keys, and its issuer, audience, expiry and nonce against this sign-in.
    Without them the email comes from the userinfo endpoint.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: tuple[str, ...] = ()
    issuer: str | None = None
    jwks_uri: str | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    # What some providers need beyond the standard (Google: access_type=offline, prompt=consent).
    extra_authorize_params: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "revocation_endpoint",
                     "jwks_uri")
    @classmethod
    def _secure(cls, url: str | None) -> str | None:
        if url is not None and not is_secure_transport(url):
            raise ValueError(f"{url!r} must be an https URL (http only on loopback)")
        return url

    @model_validator(mode="after")
    def _issuer_with_keys(self) -> Self:
        if self.jwks_uri and not self.issuer:
            raise ValueError("jwks_uri needs issuer: an id token is checked against both")
        return self

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)
