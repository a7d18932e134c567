"""Who is calling `/mcp`: the endpoint authenticates each request and leaves the caller in the
request's ASGI state, where tools and the tier gate find it through the SDK's request context.

Kept apart from the SDK so that the endpoint, the tools and the tests share one key without
importing the MCP server package for it.
"""

from collections.abc import MutableMapping
from typing import Any

from app.auth.principal import Principal, Tier
from app.errors import Forbidden

_STATE_KEY = "mcp_caller"


def remember_caller(scope: MutableMapping[str, Any], caller: Principal) -> None:
    scope.setdefault("state", {})[_STATE_KEY] = caller


def caller_in(request: Any) -> Principal:
    """The caller the endpoint stored for this HTTP request (a Starlette `Request`)."""
    caller = getattr(request, "scope", {}).get("state", {}).get(_STATE_KEY)
    if not isinstance(caller, Principal):
        # A server built by app.mcp.tools is only ever served through app.mcp.endpoint.
        raise RuntimeError("no caller on this request: serve berth's MCP server through app.mcp.endpoint")
    return caller


def refusal(caller: Principal, needed: Tier) -> str | None:
    """Why `caller` may not use something that needs `needed`, or None when it may."""
    try:
        caller.require(needed)
    except Forbidden as refused:
        return refused.message
    return None
