"""FastAPI dependencies: the process's services, and who is calling.

Reads (GET/HEAD) need a read-tier key, changes a standard-tier key; `AdminUser` routes (key
management, join tokens) need an admin key or a signed-in user. Runtime tokens authenticate only
the runtime routes (`CallingRuntime`). The infra SSH routes take an `SshOperator`: any user
credential, with the `X-User-Id` it sends; their services decide (and audit) who may do what.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app import composition
from app.auth.principal import USER_ID_PATTERN, Principal, Tier, bearer_secret
from app.composition import Services
from app.services.ssh_caller import SshCaller
from app.web.openapi import answers

if TYPE_CHECKING:  # the records are not needed to answer /v1/health on a cold start
    from app.domain.accounts import CredentialKind

_USER_KINDS: "tuple[CredentialKind, ...]" = ("session", "api_key")
_bearer_scheme = HTTPBearer(auto_error=False, description="API key, session token or runtime token")
_api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_services() -> Services:
    return composition.services()


ServicesDep = Annotated[Services, Depends(get_services)]


@answers(401)  # a malformed Authorization header
def _secret(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
    api_key: Annotated[str | None, Security(_api_key_scheme)],
) -> str | None:
    # The schemes above document the two headers; parsing stays in one place.
    return bearer_secret(request.headers.get("authorization"), api_key)


@answers(401, 403)  # 403: a read-tier key on a change
def authenticated_user(request: Request, secret: Annotated[str | None, Depends(_secret)],
                       services: ServicesDep) -> Principal:
    principal = services.authenticator.resolve(secret, kinds=_USER_KINDS)
    principal.require(Tier.read if request.method in ("GET", "HEAD") else Tier.standard)
    return principal


@answers(403)
def admin_user(principal: Annotated[Principal, Depends(authenticated_user)]) -> Principal:
    principal.require(Tier.admin)
    return principal


def session_user(secret: Annotated[str | None, Depends(_secret)], services: ServicesDep) -> Principal:
    return services.authenticator.resolve(secret, kinds=("session",))


def authenticated_runtime(secret: Annotated[str | None, Depends(_secret)], services: ServicesDep) -> Principal:
    return services.authenticator.resolve(secret, kinds=("runtime",))


def ssh_caller(secret: Annotated[str | None, Depends(_secret)], services: ServicesDep,
               # No pattern here: infra SSH audits every attempt, a malformed name included (403 `denied`).
               x_user_id: Annotated[str | None, Header(max_length=200, description=(
                   "the person an API key acts for (required to change anything); a session acts for its user"))]
               = None) -> SshCaller:
    return SshCaller.of(services.authenticator.resolve(secret, kinds=_USER_KINDS), x_user_id)


User = Annotated[Principal, Depends(authenticated_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]
SessionUser = Annotated[Principal, Depends(session_user)]
CallingRuntime = Annotated[Principal, Depends(authenticated_runtime)]


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None


@answers(400)  # a cursor this listing did not hand out
def page_request(
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many items")] = 50,
    cursor: Annotated[str | None, Query(max_length=2000, pattern=r"^[A-Za-z0-9_-]*$",
                                        description="`next_cursor` of the previous page, as it was given")] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


Paging = Annotated[PageRequest, Depends(page_request)]


def acting_user(principal: User, x_user_id: Annotated[str | None, Header(
        max_length=128, pattern=USER_ID_PATTERN,
        description="the user a workspace API key acts for (a session acts for its own user)")] = None,
) -> str:
    return principal.acting_for(x_user_id)


ActingUser = Annotated[str, Depends(acting_user)]


SshOperator = Annotated[SshCaller, Depends(ssh_caller)]
