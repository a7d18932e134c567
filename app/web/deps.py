"""FastAPI dependencies: the process's services, and who is calling.

Reads (GET/HEAD) need a read-tier key, changes a standard-tier key; `AdminUser` routes (key
management, join tokens) need an admin key or a signed-in user. Runtime tokens authenticate only
the runtime routes (`CallingRuntime`). The infra SSH routes take an `SshOperator`: any user
credential, with the `X-User-Id` it sends; their services decide (and audit) who may do what.
"""

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app import composition
from app.auth.principal import Principal, Tier, bearer_secret
from app.composition import Services
from app.services.ssh_caller import SshCaller

if TYPE_CHECKING:  # the records are not needed to answer /v1/health on a cold start
    from app.domain.accounts import CredentialKind

_USER_KINDS: "tuple[CredentialKind, ...]" = ("session", "api_key")
_bearer_scheme = HTTPBearer(auto_error=False, description="API key, session token or runtime token")
_api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_services() -> Services:
    return composition.services()


ServicesDep = Annotated[Services, Depends(get_services)]


def _secret(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
    api_key: Annotated[str | None, Security(_api_key_scheme)],
) -> str | None:
    # The schemes above document the two headers; parsing stays in one place.
    return bearer_secret(request.headers.get("authorization"), api_key)


def authenticated_user(request: Request, secret: Annotated[str | None, Depends(_secret)],
                       services: ServicesDep) -> Principal:
    principal = services.authenticator.resolve(secret, kinds=_USER_KINDS)
    principal.require(Tier.read if request.method in ("GET", "HEAD") else Tier.standard)
    return principal


def admin_user(principal: Annotated[Principal, Depends(authenticated_user)]) -> Principal:
    principal.require(Tier.admin)
    return principal


def session_user(secret: Annotated[str | None, Depends(_secret)], services: ServicesDep) -> Principal:
    return services.authenticator.resolve(secret, kinds=("session",))


def authenticated_runtime(secret: Annotated[str | None, Depends(_secret)], services: ServicesDep) -> Principal:
    return services.authenticator.resolve(secret, kinds=("runtime",))


def ssh_caller(secret: Annotated[str | None, Depends(_secret)], services: ServicesDep,
               x_user_id: Annotated[str | None, Header(max_length=200, description=(
                   "the person an API key acts for (required to change anything); a session acts for its user"))]
               = None) -> SshCaller:
    return SshCaller.of(services.authenticator.resolve(secret, kinds=_USER_KINDS), x_user_id)


User = Annotated[Principal, Depends(authenticated_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]
SessionUser = Annotated[Principal, Depends(session_user)]
CallingRuntime = Annotated[Principal, Depends(authenticated_runtime)]
SshOperator = Annotated[SshCaller, Depends(ssh_caller)]
