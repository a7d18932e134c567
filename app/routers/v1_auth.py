"""`/v1/auth/*`: accounts and sessions (runtime spec)."""

from fastapi import APIRouter, status

from app.auth.dependencies import SessionUser, User
from app.schemas.accounts import (AuthResult, ForgotRequest, LoginRequest, LogoutResponse, MeResponse,
                                  OkResponse, ResetRequest, SignupRequest, VerifyRequest)
from app.services import accounts

router = APIRouter(prefix="/v1/auth", tags=["accounts"])


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=AuthResult)
def signup(body: SignupRequest) -> AuthResult:
    """Create a workspace and its owner; answers with a session token. 409 when the email is taken."""
    return accounts.signup(body)


@router.post("/login", response_model=AuthResult)
def login(body: LoginRequest) -> AuthResult:
    return accounts.login(body.email, body.password)


@router.get("/me", response_model=MeResponse)
def me(principal: User) -> MeResponse:
    return MeResponse(user=accounts.me(principal), auth=principal.kind)


@router.post("/logout", response_model=LogoutResponse)
def logout(principal: SessionUser, all: bool = False) -> LogoutResponse:
    """End this session, or with `?all=true` every session of the user."""
    return LogoutResponse(sessions_ended=accounts.logout(principal, everywhere=all))


@router.post("/forgot", response_model=OkResponse)
def forgot(body: ForgotRequest) -> OkResponse:
    """Mail a reset link if the address has an account. Always 200, so accounts cannot be probed."""
    accounts.forgot(body.email)
    return OkResponse(message="if that address has an account, a reset link is on its way")


@router.post("/reset", response_model=OkResponse)
def reset(body: ResetRequest) -> OkResponse:
    ended = accounts.reset(body.token, body.password)
    return OkResponse(message=f"password changed; {ended} session(s) ended")


@router.post("/verify", response_model=OkResponse)
def verify(body: VerifyRequest) -> OkResponse:
    accounts.verify(body.token)
    return OkResponse(message="email verified")
