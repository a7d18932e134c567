"""`/v1/auth/*`: accounts and sessions (runtime spec)."""

from fastapi import APIRouter, Request, status

from app.schemas.accounts import (
    AuthResult,
    AuthUser,
    ForgotRequest,
    LoginRequest,
    LogoutResponse,
    MeResponse,
    OkResponse,
    ResetRequest,
    SignupRequest,
    VerifyRequest,
)
from app.services.accounts import SignedIn
from app.web.deps import ServicesDep, SessionUser, User
from app.web.openapi import errors

router = APIRouter(prefix="/v1/auth", tags=["accounts"])


def _client(request: Request) -> str | None:
    """The caller's network address, counted by the rate limits: the socket's peer, which under
    API Gateway is the request context's source IP (Mangum puts it in the scope). Never a header
    the client writes, such as X-Forwarded-For."""
    return request.client.host if request.client else None


def _result(signed_in: SignedIn) -> AuthResult:
    return AuthResult(token=signed_in.token, user=AuthUser.of(signed_in.user, signed_in.workspace),
                      expires_at=signed_in.expires_at)


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=AuthResult, responses=errors(409, 429))
def signup(body: SignupRequest, request: Request, services: ServicesDep) -> AuthResult:
    """Create a workspace and its owner; answers with a session token. 409 when the email is taken;
    429 (with Retry-After) past the attempts allowed per address and per client."""
    return _result(services.accounts.signup(body.name, body.email, body.password, body.workspace,
                                            client=_client(request)))


@router.post("/login", response_model=AuthResult, responses=errors(401, 429))
def login(body: LoginRequest, request: Request, services: ServicesDep) -> AuthResult:
    """A new session; 429 (with Retry-After) past the attempts allowed per address and per client."""
    return _result(services.accounts.login(body.email, body.password, client=_client(request)))


@router.get("/me", response_model=MeResponse)
def me(principal: User, services: ServicesDep) -> MeResponse:
    user, workspace = services.accounts.me(principal)
    return MeResponse(user=AuthUser.of(user, workspace), auth="session" if principal.kind == "session" else "api_key")


@router.post("/logout", response_model=LogoutResponse)
def logout(principal: SessionUser, services: ServicesDep, all: bool = False) -> LogoutResponse:
    """End this session, or with `?all=true` every session of the user."""
    return LogoutResponse(sessions_ended=services.accounts.logout(principal, everywhere=all))


@router.post("/forgot", response_model=OkResponse, responses=errors(429))
def forgot(body: ForgotRequest, request: Request, services: ServicesDep) -> OkResponse:
    """Mail a reset link if the address has an account. Always 200, taking as long either way, so
    accounts cannot be probed; 429 (with Retry-After) past the attempts allowed."""
    services.accounts.forgot(body.email, client=_client(request))
    return OkResponse(message="if that address has an account, a reset link is on its way")


@router.post("/reset", response_model=OkResponse)
def reset(body: ResetRequest, services: ServicesDep) -> OkResponse:
    ended = services.accounts.reset(body.token, body.password)
    return OkResponse(message=f"password changed; {ended} session(s) ended")


@router.post("/verify", response_model=OkResponse)
def verify(body: VerifyRequest, services: ServicesDep) -> OkResponse:
    services.accounts.verify(body.token)
    return OkResponse(message="email verified")
