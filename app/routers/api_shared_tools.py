"""`/api/shared-tools`: tools that act for each user with that user's own OAuth grant, and
`/api/auth/callback`, where the provider sends the user back (no credentials: the state is the
proof, and the answer is a small page for a person's browser).

A workspace API key acts for the user `X-User-Id` names (its own user without one); a session for
its own user. Tool ids are catalog names (`io.github.owner/server`): one slash, in the path.
"""

import html
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import HTMLResponse

from app.errors import BerthError
from app.oauth.errors import OAuthError
from app.schemas.shared_tools import (
    TOOL_ID_PATTERN,
    ConnectionStatus,
    ConnectionView,
    Disconnection,
    OAuthClientRequest,
    OAuthClientView,
    SharedToolList,
    SharedToolView,
    SignInLink,
    UserEmail,
)
from app.web.deps import ActingUser, AdminUser, ServicesDep, User
from app.web.openapi import errors

router = APIRouter(tags=["shared tools"])
ToolId = Annotated[str, Path(pattern=TOOL_ID_PATTERN, max_length=200, description="a shared tool's catalog name")]
_TOOL = "/api/shared-tools/{tool_id:path}"


@router.get("/api/shared-tools", response_model=SharedToolList, responses=errors(400, 401, 403))
def list_shared_tools(principal: User, user_id: ActingUser, services: ServicesDep) -> SharedToolList:
    """The shared tools, each with the user's connection."""
    now = services.clock.now()
    return SharedToolList(user_id=user_id, shared_tools=[
        SharedToolView.of(found.tool.document, found.tool.oauth, found.client, found.grant, now)
        for found in services.shared_tools.connections(principal, user_id)])


@router.put(f"{_TOOL}/oauth/client", response_model=OAuthClientView, responses=errors(401, 403, 404, 422))
def register_client(principal: AdminUser, tool_id: ToolId, body: OAuthClientRequest,
                    services: ServicesDep) -> OAuthClientView:
    """Register (or replace) the workspace's OAuth client with the tool's provider (admin). Register
    the answer's `redirect_uri` with the provider too."""
    shared = services.shared_tools
    client = shared.register_client(principal, tool_id, client_id=body.client_id, client_secret=body.client_secret,
                                    provider=body.provider())
    return OAuthClientView.of(client, shared.tool(tool_id).oauth, shared.redirect_uri)


@router.delete(f"{_TOOL}/oauth/client", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404))
def remove_client(principal: AdminUser, tool_id: ToolId, services: ServicesDep) -> None:
    """Remove the workspace's OAuth client: no new sign-ins, and grants can no longer be refreshed."""
    services.shared_tools.remove_client(principal, tool_id)


@router.post(f"{_TOOL}/oauth/state", status_code=status.HTTP_201_CREATED, response_model=SignInLink,
             responses=errors(400, 401, 403, 404, 409))
def begin_sign_in(principal: User, user_id: ActingUser, tool_id: ToolId, services: ServicesDep) -> SignInLink:
    """A sign-in link for the user: an OAuth state bound to this workspace, user and tool, single
    use and short-lived, with PKCE. 409 when the workspace has registered no OAuth client for it."""
    pending = services.shared_tools.begin(principal, user_id, tool_id)
    return SignInLink(tool_id=tool_id, user_id=user_id, authorization_url=pending.authorization_url,
                      expires_at=services.clock.iso(pending.expires_at))


@router.get(f"{_TOOL}/oauth/status", response_model=ConnectionStatus, responses=errors(400, 401, 403, 404))
def sign_in_status(principal: User, user_id: ActingUser, tool_id: ToolId, services: ServicesDep) -> ConnectionStatus:
    """Whether the user has connected the tool: expired or not, the scopes granted, and when."""
    found = services.shared_tools.connection(principal, user_id, tool_id)
    view = ConnectionView.of(found.grant, services.clock.now())
    return ConnectionStatus(tool_id=tool_id, user_id=user_id, **view.model_dump())


@router.get(f"{_TOOL}/oauth/user-email", response_model=UserEmail, responses=errors(400, 401, 403, 404, 409, 502))
async def user_email(principal: User, user_id: ActingUser, tool_id: ToolId, services: ServicesDep) -> UserEmail:
    """The address the user's grant belongs to: from the verified id token, else asked of the
    provider's userinfo endpoint with the user's own token (refreshed first when it must be). 404
    when not connected; 400 when the provider no longer honours the grant (connect again)."""
    email, source = await services.shared_tools.email(principal, user_id, tool_id)
    return UserEmail(tool_id=tool_id, user_id=user_id, email=email, source=source)


@router.delete(f"{_TOOL}/oauth", response_model=Disconnection, responses=errors(400, 401, 403, 404))
async def disconnect(principal: User, user_id: ActingUser, tool_id: ToolId, services: ServicesDep) -> Disconnection:
    """Forget the user's grant, after asking the provider to revoke it where it offers that."""
    outcome = await services.shared_tools.disconnect(principal, user_id, tool_id)
    return Disconnection(tool_id=tool_id, user_id=user_id, revoked_at_provider=outcome.revoked_at_provider,
                         detail=outcome.detail)


_PAGE_STATUSES = {400: "the sign-in link is unknown, used or expired, or the provider refused the code",
                  403: "access was not granted at the provider", 404: "the tool is no longer offered",
                  409: "the workspace no longer has an OAuth client for the tool",
                  502: "the provider failed or could not be reached"}


@router.get("/api/auth/callback", response_class=HTMLResponse, responses={
    200: {"content": {"text/html": {}}, "description": "the connection worked"},
    **{code: {"content": {"text/html": {}}, "description": why} for code, why in _PAGE_STATUSES.items()},
    **errors(422)})
async def oauth_callback(
    services: ServicesDep,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    error_description: Annotated[str | None, Query(max_length=1000)] = None,
) -> HTMLResponse:
    """Where the provider returns the user after a sign-in: checks the state (single use, not
    expired), exchanges the code, keeps the tokens for the user the state was made for, and
    answers a page saying it worked or why not."""
    if not state:
        return _page(400, "Not connected", "This address needs the sign-in's state: start the connection again.")
    try:
        grant = await services.shared_tools.complete(state=state, code=code, error=error,
                                                     error_description=error_description)
    except OAuthError as failed:
        return _page(failed.status, "Not connected", failed.message, reason=failed.reason)
    except BerthError as failed:
        if failed.status >= 500:
            raise
        return _page(failed.status, "Not connected", failed.message)
    return _page(200, "Connected", f"{grant.tool_id} is connected for {grant.user_id}. You can close this window.")


def _page(status_code: int, title: str, message: str, reason: str | None = None) -> HTMLResponse:
    detail = f'<p class="reason">({html.escape(reason)})</p>' if reason else ""
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>berth: {html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"></head><body><h1>{html.escape(title)}</h1>'
            f"<p>{html.escape(message)}</p>{detail}</body></html>")
    # A page of berth's own text: nothing to load, nothing to run, never framed, never cached.
    headers = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'", "Cache-Control": "no-store",
               "Referrer-Policy": "no-referrer"}
    return HTMLResponse(body, status_code=status_code, headers=headers)
