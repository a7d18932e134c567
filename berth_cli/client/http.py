"""The HTTP underneath every route method: one `httpx.Client`, berth's error shape turned into
`ApiError`, network failures into `Unreachable`, and event streams that resume across the
server's stream windows."""

import json
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import connect_sse

from berth_cli.errors import ApiError, Unreachable

# A stream ends on its own before API Gateway's 29 s cut (BERTH_SSE_WINDOW_SECONDS, 25 s by
# default) and may be silent that long, so reads wait longer than a window, never for ever.
STREAM_READ_TIMEOUT = 90.0
# Consecutive failed connections an event stream survives, waiting the server's `retry` delay
# times the attempt number in between (about 15 s in all with the 1 s the server asks for).
STREAM_RETRIES = 5


def cli_version() -> str:
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def segment(value: str) -> str:
    """A value placed in a URL path, quoted so that it stays one segment (`../x` cannot walk)."""
    return quote(value, safe="")


class Http:
    def __init__(self, api_url: str, credential: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        self.api_url = api_url.rstrip("/")
        headers = {"User-Agent": f"berth-cli/{cli_version()}"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        self._client = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                timeout: float | None = None, headers: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON of a 2xx answer; `ApiError` for any other status."""
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            response = self._client.request(method, path, json=json, params=_present(params), headers=headers,
                                            **extra)
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        _raise_for_status(response)
        return response.json() if response.content else None

    def events(self, path: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
        """Every event after sequence number `after`, in order, each once, until the stream's
        `end`. A stream that ends without `end` was cut at its window: the next one resumes
        with `Last-Event-ID`. Connections that fail are retried a few times."""
        last, failures, retry_seconds = after, 0, 1.0
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            opened, received = time.monotonic(), 0
            try:
                timeout = httpx.Timeout(self._client.timeout.connect, read=STREAM_READ_TIMEOUT)
                with connect_sse(self._client, "GET", path, headers=headers, timeout=timeout) as source:
                    _raise_for_status(source.response)
                    failures = 0
                    for message in source.iter_sse():
                        if message.retry is not None:
                            retry_seconds = message.retry / 1000
                        if message.event == "end":
                            return
                        if not message.data:
                            continue  # a frame carrying only `retry`
                        event = json.loads(message.data)
                        if event["seq"] > last:  # a resumed stream never repeats, but be sure
                            last, received = event["seq"], received + 1
                            yield event
            except httpx.TransportError as error:
                failures += 1
                if failures > STREAM_RETRIES:
                    raise self._unreachable(error) from error
                time.sleep(retry_seconds * failures)
                continue
            if not received and time.monotonic() - opened < retry_seconds:
                time.sleep(retry_seconds)  # a stream that closes at once: do not spin

    def _unreachable(self, error: httpx.TransportError) -> Unreachable:
        if isinstance(error, httpx.TimeoutException):
            reason = f"no answer in time ({type(error).__name__})"
        else:
            reason = str(error) or type(error).__name__
        return Unreachable(self.api_url, reason)


def _present(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return {name: value for name, value in params.items() if value is not None} if params else None


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()  # a streamed answer has not read its body yet
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    else:  # not berth's error shape: a proxy or gateway in between answered
        message = response.text.strip()[:200] or response.reason_phrase or "error"
    request_id = (body.get("request_id") if isinstance(body, dict) else None) or response.headers.get("x-request-id")
    raise ApiError(response.status_code, message, request_id, response.request.method, str(response.request.url))
