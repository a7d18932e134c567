"""MCP servers someone else runs (a registry entry's `remotes`), reached by the API itself over
streamable HTTP with an installation's headers: no sandbox, no runtime.

The `mcp` SDK client costs about a second to import, so it is imported inside the calls: no other
route (and no cold start) pays for it. Each call opens a session (initialize, then the request)
and closes it: an API process keeps no connection to anyone's server between requests.

The URL comes from a registry document, so the API must not become a way into its own network:
only https (or http where private addresses are allowed, for local servers), and every address
the host name resolves to must be public unless `allow_private` (the local stack's tests). The
check is made before connecting; a DNS answer that changes between the check and the connect is
a residual risk (docs/decisions.md).
"""

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit


class RemoteRefused(Exception):
    """The remote's URL is not one the API may call."""


class RemoteFailed(Exception):
    """The remote server could not be reached, or did not answer as an MCP server."""


async def check_url(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if allow_private else ("https",)):
        raise RemoteRefused(f"remote servers are reached over https only, not {parts.scheme or 'no scheme'}")
    if not parts.hostname:
        raise RemoteRefused("the remote's URL has no host")
    if allow_private:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError as error:
        raise RemoteFailed(f"{parts.hostname} does not resolve: {error}") from error
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            raise RemoteRefused(f"{parts.hostname} resolves to {ip}, an address that is not public")


async def list_tools(url: str, headers: dict[str, str], *, timeout: float, allow_private: bool) -> list[dict]:
    """The remote's tools, as name, description and input_schema."""

    async def listed(session: Any) -> list[dict]:
        tools = (await session.list_tools()).tools
        return [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema} for t in tools]

    return await _with_session(url, headers, timeout, allow_private, listed)


async def call_tool(url: str, headers: dict[str, str], name: str, arguments: dict[str, Any], *, timeout: float,
                    allow_private: bool) -> dict[str, Any]:
    """`{"ok", "result"}` as a sandbox's tool call answers: a tool's own failure is `ok: false`."""

    async def called(session: Any) -> dict[str, Any]:
        result = await session.call_tool(name, arguments, read_timeout_seconds=timeout)
        dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True,
                                   include={"content", "structured_content", "is_error"})
        return {"ok": not getattr(result, "is_error", False), "result": dumped}

    return await _with_session(url, headers, timeout, allow_private, called)


async def _with_session(url: str, headers: dict[str, str], timeout: float, allow_private: bool, use: Any) -> Any:
    await check_url(url, allow_private=allow_private)
    import httpx2  # the SDK's HTTP client (its dependency), configured as its docs say
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    try:
        async with asyncio.timeout(timeout), httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(timeout), follow_redirects=False) as http, \
                streamable_http_client(url, http_client=http) as (read_stream, write_stream), \
                ClientSession(read_stream, write_stream) as session:
            await session.initialize()
            return await use(session)
    except Exception as error:  # the SDK's task groups wrap what its transport met
        raise RemoteFailed(_describe(_innermost(error), timeout)) from error


def _innermost(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"the remote server did not answer within {timeout:g} s"
    return f"the remote server failed: {type(error).__name__}: {error}"
