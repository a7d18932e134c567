"""The runtime HTTP API as the worker calls it: one method per route, typed with `app.contract.messages`.

Failures are sorted into what the worker decides on: `Unauthorized` (the runtime token was
revoked, or the join token is bad), `StaleClaim` (another worker owns the job now),
`ApiUnavailable` (unreachable, timed out, 5xx or 429: retry later) and `RequestRejected` (any
other 4xx: retrying the same request cannot help).
"""

from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from app.contract.messages import (
    ClaimRequest,
    ClaimResponse,
    ControlReply,
    EventBatch,
    EventBatchResult,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseRenewal,
    LeaseRenewed,
    LeaseRequest,
    LeaseResponse,
    ReceiptRequest,
    RegisterRequest,
    RegisterResponse,
)

REQUEST_TIMEOUT_SECONDS = 15.0
_Model = TypeVar("_Model", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}" if status else message)


class Unauthorized(ApiError):
    pass


class StaleClaim(ApiError):
    pass


class ApiUnavailable(ApiError):
    pass


class RequestRejected(ApiError):
    pass


class RuntimeApiClient:
    def __init__(
        self, base_url: str, runtime_token: str | None = None, transport: httpx.AsyncBaseTransport | None = None
    ):
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=REQUEST_TIMEOUT_SECONDS, transport=transport
        )
        self.runtime_token = runtime_token

    async def aclose(self) -> None:
        await self._http.aclose()

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        return await self._post("/v1/cloud/runtimes/register", request, RegisterResponse, authenticated=False)

    async def heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        return await self._post("/v1/cloud/runtimes/heartbeat", request, HeartbeatResponse)

    async def lease(self, request: LeaseRequest) -> LeaseResponse:
        # A long poll: the server may hold the request for `wait_seconds` before answering.
        timeout = REQUEST_TIMEOUT_SECONDS + request.wait_seconds
        return await self._post("/v1/cloud/runtimes/lease", request, LeaseResponse, timeout=timeout)

    async def ack(self, request: ReceiptRequest) -> None:
        await self._send("/v1/cloud/runtimes/ack", request)

    async def change_visibility(self, request: ReceiptRequest) -> None:
        await self._send("/v1/cloud/runtimes/visibility", request)

    async def claim(self, workspace_id: str, job_id: str, request: ClaimRequest) -> ClaimResponse:
        return await self._post(f"{_job_path(workspace_id, job_id)}/claim", request, ClaimResponse)

    async def renew_lease(self, workspace_id: str, job_id: str, request: LeaseRenewal) -> LeaseRenewed:
        return await self._post(f"{_job_path(workspace_id, job_id)}/lease", request, LeaseRenewed)

    async def post_events(self, workspace_id: str, job_id: str, batch: EventBatch) -> EventBatchResult:
        return await self._post(f"{_job_path(workspace_id, job_id)}/events", batch, EventBatchResult)

    async def reply_control(self, workspace_id: str, request_id: str, reply: ControlReply) -> None:
        path = f"/v1/cloud/runtimes/control/{_segment(workspace_id)}/{_segment(request_id)}/reply"
        await self._send(path, reply)

    async def _post(self, path: str, body: BaseModel, response_model: type[_Model], authenticated: bool = True,
                    timeout: float | None = None) -> _Model:
        response = await self._send(path, body, authenticated, timeout)
        try:
            return response_model.model_validate_json(response.content)
        except ValidationError as exc:
            raise RequestRejected(response.status_code, f"unexpected response body from {path}") from exc

    async def _send(self, path: str, body: BaseModel, authenticated: bool = True,
                    timeout: float | None = None) -> httpx.Response:
        headers = {}
        if authenticated:
            if not self.runtime_token:
                raise Unauthorized(401, "no runtime token: the worker is not registered")
            headers["Authorization"] = f"Bearer {self.runtime_token}"
        try:
            response = await self._http.post(
                path,
                content=body.model_dump_json(),
                headers={**headers, "Content-Type": "application/json"},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise ApiUnavailable(0, f"{type(exc).__name__} calling {path}") from exc
        if response.status_code >= 400:
            raise _error_for(response)
        return response


def _error_for(response: httpx.Response) -> ApiError:
    status = response.status_code
    try:
        message = str(response.json().get("error") or response.reason_phrase)
    except (ValueError, AttributeError):
        message = response.reason_phrase or "error"
    if status == 401:
        return Unauthorized(status, message)
    if status == 409:
        return StaleClaim(status, message)
    if status == 429 or status >= 500:
        return ApiUnavailable(status, message)
    return RequestRejected(status, message)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _job_path(workspace_id: str, job_id: str) -> str:
    return f"/v1/cloud/runtimes/jobs/{_segment(workspace_id)}/{_segment(job_id)}"
