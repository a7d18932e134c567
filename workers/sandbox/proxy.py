"""What the runtime proxy lets through, each way, and the proxy tokens it has already honoured.

The API serves a proxied response on its own origin, so whatever a sandbox's server answers
would act with the API's authority in a browser: a cookie set for the API's domain, a page whose
scripts read the API's storage, a `Clear-Site-Data` that logs the user out. So:

- Response headers pass through an allow-list: what a streamable-HTTP MCP server needs (its
  content type, caching, `Mcp-Session-Id`, `Mcp-Protocol-Version`, ...) and nothing that acts on
  the origin (`Set-Cookie`, CORS, HSTS, `Clear-Site-Data`, `Refresh`, `Location`, ...).
- Every response is neutralised: `Content-Security-Policy: sandbox` (a unique opaque origin,
  no scripts, no forms; `default-src 'none'`, `frame-ancestors 'none'`), and `nosniff`.
  Active types (HTML, SVG, XML, JavaScript) are also served as an attachment, for browsers
  that ignore CSP's sandbox. The body and content type stay as the server sent them, so JSON
  and event streams, which is what MCP clients read, are unchanged.
- The request asks for an uncompressed answer (`Accept-Encoding: identity`) and the response
  carries no `Content-Encoding`: the body that goes back is the one the headers describe, even
  when a server compresses anyway (the HTTP client decodes it).
"""

import heapq

ALLOWED_RESPONSE_HEADERS = frozenset({
    "content-type", "cache-control", "etag", "last-modified", "expires", "content-language", "vary",
    "mcp-session-id", "mcp-protocol-version", "www-authenticate", "retry-after",
})
NEUTRALISING_HEADERS = {
    "content-security-policy": "sandbox; default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
}
ACTIVE_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
                        "text/xsl", "text/javascript", "application/javascript", "application/ecmascript")
DROPPED_REQUEST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                                     "accept-encoding", "cookie"})


def request_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers forwarded to the sandbox's server."""
    kept = {name: value for name, value in headers.items() if name.lower() not in DROPPED_REQUEST_HEADERS}
    return {**kept, "accept-encoding": "identity"}


def response_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The headers of the response the API will serve on its origin."""
    kept = {name.lower(): value for name, value in headers if name.lower() in ALLOWED_RESPONSE_HEADERS}
    content_type = kept.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ACTIVE_CONTENT_TYPES:
        kept["content-disposition"] = "attachment"
    return {**kept, **NEUTRALISING_HEADERS}


class SeenNonces:
    """Nonces of proxy tokens already honoured, each kept until its token expires."""

    def __init__(self) -> None:
        self._expiries: list[tuple[float, str]] = []
        self._seen: set[str] = set()

    def first_use(self, nonce: str, expires: float, now: float) -> bool:
        """True the first time `nonce` is offered (and remembers it); False after."""
        while self._expiries and self._expiries[0][0] <= now:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        if nonce in self._seen:
            return False
        self._seen.add(nonce)
        heapq.heappush(self._expiries, (expires, nonce))
        return True
