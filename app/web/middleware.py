"""ASGI middleware: request ids, the body-size limit and one access-log line per request.

Written as plain ASGI (not BaseHTTPMiddleware) so Server-Sent Events stream through untouched.
"""

import json
import re
import time

from starlette.exceptions import HTTPException

from app.errors import error_body
from app.logs import begin_request, get_logger, log_event

logger = get_logger("berth.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from app.ids import new_id

        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.match(offered) else new_id("req")
        begin_request(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_seen = 0

        async def send_with_id(message):
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        async def reject(status: int, text: str):
            body = json.dumps(error_body(status, text, request_id)).encode()
            await send_with_id({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        declared = headers.get(b"content-length")
        limit = self.max_body_bytes
        try:
            if declared is not None and int(declared) > limit:
                await reject(413, f"request body too large: the limit is {limit} bytes")
                return self._log(scope, 413, started)
        except ValueError:
            await reject(400, "invalid Content-Length header")
            return self._log(scope, 400, started)

        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body parsing (others become a 400).
                    raise HTTPException(413, f"request body too large: the limit is {limit} bytes")
            return message

        await self.app(scope, limited_receive, send_with_id)
        self._log(scope, status_seen, started)

    @staticmethod
    def _log(scope, status: int, started: float) -> None:
        log_event(logger, "request", method=scope.get("method"), path=scope.get("path"), status=status,
                  duration_ms=round((time.perf_counter() - started) * 1000, 2))
