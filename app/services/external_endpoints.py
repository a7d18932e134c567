"""External OpenAI-compatible servers (a user's own Ollama or vLLM) that the API calls itself: what
they serve (`GET {base}/models`) and one request forwarded to them for `/openai/v1`.

Where the API runs in AWS, an endpoint must be a public address: never loopback, a private network
or link-local (the instance metadata service), so that a workspace cannot point the API at what
lies behind it. The local stack is one person's machine, where their own server on localhost is
the point.
"""

import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.errors import BadGateway, GatewayTimeout, Unprocessable
from app.services.control import StreamedAnswer
from app.settings import Settings

if TYPE_CHECKING:
    import httpx

PROBE_SECONDS = 10.0
# The caller's credentials and hop-by-hop headers never travel on; the endpoint gets its own key.
_DROPPED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                              "authorization", "cookie", "x-api-key", "accept-encoding"})
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                                       "content-encoding", "set-cookie"})


class ExternalEndpoints:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> "httpx.Client":
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(trust_env=False, follow_redirects=False,
                                            limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30))
            return self._client

    def check_url(self, url: str) -> str:
        """`url` as a base URL the API may call (no trailing slash); Unprocessable saying why not."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unprocessable("an external endpoint is an http:// or https:// base URL, e.g. http://host:11434/v1")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise Unprocessable("an external endpoint's URL carries no credentials, query or fragment: give the key"
                                " as apiKey")
        if self.settings.mode != "local":
            try:
                addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
            except OSError as error:
                raise Unprocessable(f"{parts.hostname} does not resolve: {error}") from None
            for address in addresses:
                ip = ipaddress.ip_address(str(address).split("%")[0])
                if not ip.is_global:
                    raise Unprocessable(f"{parts.hostname} resolves to {ip}, which is not a public address")
        return url.strip().rstrip("/")

    def served_models(self, base_url: str, api_key: str | None) -> list[str]:
        """The model ids the endpoint lists; BadGateway saying why it could not be asked."""
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = self._http().get(f"{base_url}/models", headers=headers, timeout=PROBE_SECONDS)
        except httpx.HTTPError as error:
            raise BadGateway(f"the endpoint {base_url} could not be reached: {type(error).__name__}") from None
        if response.status_code in (401, 403):
            raise BadGateway(f"the endpoint {base_url} refused the key ({response.status_code})")
        if response.status_code != 200:
            raise BadGateway(f"the endpoint {base_url} answered {response.status_code} to GET /models")
        try:
            return [str(entry["id"]) for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise BadGateway(f"the endpoint {base_url} does not answer GET /models as the OpenAI API does") from None

    def forward(self, base_url: str, api_key: str | None, method: str, path: str, headers: dict[str, str],
                body: bytes, timeout: float) -> StreamedAnswer:
        """One request to the endpoint (`path` below its base URL), its answer streamed."""
        import httpx

        outgoing = {name: value for name, value in headers.items() if name.lower() not in _DROPPED_HEADERS}
        if api_key:
            outgoing["Authorization"] = f"Bearer {api_key}"
        client = self._http()
        request = client.build_request(method, f"{base_url}/{path}", headers=outgoing, content=body,
                                       timeout=httpx.Timeout(timeout, connect=min(timeout, PROBE_SECONDS)))
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException:
            raise GatewayTimeout(f"the endpoint {base_url} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as error:
            raise BadGateway(f"the endpoint {base_url} could not be reached: {type(error).__name__}") from None

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.iter_bytes()  # decoded: content-encoding is not passed on
            except httpx.HTTPError:
                pass  # the endpoint broke off mid-answer: the client sees a short body
            finally:
                response.close()

        kept = {name: value for name, value in response.headers.items()
                if name.lower() not in _DROPPED_RESPONSE_HEADERS}
        return StreamedAnswer(response.status_code, kept, chunks())
