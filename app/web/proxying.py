"""What the API's HTTP proxies (a sandbox's server, an SSH forward) pass on each way: never the
caller's credentials or the hop-by-hop and framing headers, which each side sets for itself."""

from collections.abc import Mapping

PROXY_TOKEN_HEADER = "X-Berth-Proxy-Token"
_DROPPED_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length",
                              "authorization", "x-api-key", "x-user-id", PROXY_TOKEN_HEADER.lower(), "upgrade", "te",
                              "trailer", "proxy-authorization"})


def passed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a request or response, without those the proxy keeps to itself."""
    return {name: value for name, value in headers.items() if name.lower() not in _DROPPED_HEADERS}
