"""`/verify` and `/reset`: the pages the links in berth's mail open.

Opening a link changes nothing (mail scanners follow links): the page shows a form that carries
the token, and submitting it does the change through the same service as `POST /v1/auth/verify`
and `/v1/auth/reset`. Plain HTML, no scripts, nothing loaded from elsewhere; a strict CSP. These
are pages for people, not API operations, so the OpenAPI document leaves them out.
"""

from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from app.errors import BerthError
from app.schemas.accounts import ResetRequest, VerifyRequest
from app.web.deps import ServicesDep

router = APIRouter(include_in_schema=False)

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the page's address holds the token
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
          "label{display:block;margin:.8rem 0 .2rem}input{font-size:1rem;padding:.4rem;width:100%}"
          "button{margin-top:1rem;font-size:1rem;padding:.5rem 1rem}.error{color:#a00}")
_TOKEN = Annotated[str, Query(max_length=200)]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · berth</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _error(message: str) -> str:
    return f"<p class=error>{escape(message)}</p>"


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body, first value of each field."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


def _problem(error: ValidationError | BerthError) -> str:
    if isinstance(error, BerthError):
        return error.message
    return "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())


# --- verify --------------------------------------------------------------------------------------


def _verify_form(token: str, problem: str = "") -> str:
    return (f"{_error(problem) if problem else ''}<p>Confirm this address for your berth account.</p>"
            f"<form method=post action=/verify><input type=hidden name=token value=\"{escape(token)}\">"
            "<button type=submit>Confirm my address</button></form>")


@router.get("/verify")
def verify_page(token: _TOKEN = "") -> HTMLResponse:
    if not token:
        return _page("Confirm your address", _error("This link has no token: open the link from the mail."), 400)
    return _page("Confirm your address", _verify_form(token))


@router.post("/verify")
async def verify_submit(request: Request, services: ServicesDep) -> HTMLResponse:
    fields = await _form(request)
    try:
        services.accounts.verify(VerifyRequest(token=fields.get("token", "")).token)
    except (ValidationError, BerthError) as error:
        return _page("Confirm your address", _error(_problem(error)) +
                     "<p>Ask for a new link by signing in and requesting another verification mail.</p>", 400)
    return _page("Address confirmed", "<p>Your address is confirmed. You can close this page.</p>")


# --- reset ---------------------------------------------------------------------------------------


def _reset_form(token: str, problem: str = "") -> str:
    return (f"{_error(problem) if problem else ''}"
            f"<form method=post action=/reset><input type=hidden name=token value=\"{escape(token)}\">"
            "<label for=password>New password (at least 6 characters)</label>"
            "<input id=password name=password type=password minlength=6 maxlength=256 required "
            "autocomplete=new-password>"
            "<label for=again>The same again</label>"
            "<input id=again name=again type=password minlength=6 maxlength=256 required autocomplete=new-password>"
            "<button type=submit>Set the new password</button></form>")


@router.get("/reset")
def reset_page(token: _TOKEN = "") -> HTMLResponse:
    if not token:
        return _page("Reset your password", _error("This link has no token: open the link from the mail."), 400)
    return _page("Reset your password", _reset_form(token))


@router.post("/reset")
async def reset_submit(request: Request, services: ServicesDep) -> HTMLResponse:
    fields = await _form(request)
    token = fields.get("token", "")
    if fields.get("password", "") != fields.get("again", ""):
        return _page("Reset your password", _reset_form(token, "The two passwords differ."), 400)
    try:
        asked = ResetRequest(token=token, password=fields.get("password", ""))
        ended = services.accounts.reset(asked.token, asked.password)
    except ValidationError as error:  # a password the form's own checks let through: try again
        return _page("Reset your password", _reset_form(token, _problem(error)), 400)
    except BerthError as error:  # the token: used, expired or never valid
        return _page("Reset your password", _error(_problem(error)) +
                     "<p>Ask for a new link with “forgot password”.</p>", 400)
    return _page("Password changed", f"<p>Your password is changed; {ended} session(s) ended. "
                                     "Sign in with the new password.</p>")
