"""The one error hierarchy. Each class carries its HTTP status; handlers turn any of them into
`{"success": false, "error": ..., "status": N, "request_id": ...}` on both API surfaces, plus
`"kind": ...` where a surface tells its failures apart by more than the status (infra SSH:
`validation_failed`, `approval_required`, `denied`, `failed`)."""


def error_body(status: int, message: str, request_id: str, kind: str | None = None) -> dict:
    """The error shape of both surfaces, for the exception handlers and the request middleware."""
    body = {"success": False, "error": message, "status": status, "request_id": request_id}
    if kind is not None:
        body["kind"] = kind
    return body


_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                      404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                      422: "invalid_request_error", 429: "rate_limit_error"}


def openai_error_body(status: int, message: str, request_id: str) -> dict:
    """The error shape of `/openai/v1`: OpenAI's (`error` an object with `message`, `type`, `param`,
    `code`), which OpenAI clients read, plus the status and request id every berth error carries."""
    kind = _OPENAI_ERROR_TYPES.get(status, "api_error")
    code = "model_not_found" if status == 404 and "model" in message else None
    return {"error": {"message": message, "type": kind, "param": None, "code": code}, "status": status,
            "request_id": request_id}


class BerthError(Exception):
    status = 500
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, kind: str | None = None,
                 headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.kind = kind  # a machine-readable kind, where the surface defines them
        self.headers = headers or {}  # sent with the error response (e.g. Retry-After)
        super().__init__(self.message)


class BadRequest(BerthError):
    status = 400
    default_message = "bad request"


class Unauthorized(BerthError):
    status = 401
    default_message = "missing or invalid credentials"


class Forbidden(BerthError):
    status = 403
    default_message = "not allowed"


class NotFound(BerthError):
    status = 404
    default_message = "not found"


class Conflict(BerthError):
    status = 409
    default_message = "conflict"


class PayloadTooLarge(BerthError):
    status = 413
    default_message = "request body too large"


class UriTooLong(BerthError):
    status = 414
    default_message = "request URI too long"


class Unprocessable(BerthError):
    status = 422
    default_message = "unprocessable request"


class TooManyRequests(BerthError):
    status = 429
    default_message = "limit reached"

    @classmethod
    def retry_after(cls, message: str, seconds: int) -> "TooManyRequests":
        """A refusal that says when to try again (the Retry-After header)."""
        return cls(message, headers={"Retry-After": str(max(seconds, 1))})


class BadGateway(BerthError):
    status = 502
    default_message = "upstream failed"


class ServiceUnavailable(BerthError):
    status = 503
    default_message = "service unavailable"


class GatewayTimeout(BerthError):
    status = 504
    default_message = "timed out waiting for the runtime"


class ConditionFailed(Conflict):
    """A conditional write lost: the item changed (or exists) since it was read. For a
    transaction, `failed` holds the positions of the writes whose condition failed."""

    default_message = "the item changed concurrently; retry"

    def __init__(self, message: str | None = None, failed: tuple[int, ...] = ()):
        super().__init__(message)
        self.failed = failed
