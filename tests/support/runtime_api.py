"""A stand-in for the berth API's runtime routes (`/v1/cloud/runtimes/*`), served over real HTTP on
loopback from memory, for worker tests that need an API doing what the test says: issue a runtime
key, refuse a token, seal a job's secrets, answer 413 or 500 for one job's events.

It speaks the contract (`app.contract.messages`) exactly, so the worker under test runs its real
HTTP client, transport (lease mode) and control endpoint against it.
"""

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import BaseModel, ValidationError

from app.contract.messages import (
    ClaimRequest,
    ClaimResponse,
    ControlMessage,
    ControlReply,
    EventBatch,
    EventBatchResult,
    EventIn,
    HeartbeatRequest,
    HeartbeatResponse,
    JobMessage,
    JobStatus,
    LeaseRenewal,
    LeaseRenewed,
    LeaseRequest,
    LeaseResponse,
    QueueEnvelope,
    ReceiptRequest,
    RegisterRequest,
    RegisterResponse,
)

# Per job: how to answer an event batch instead of storing it; None stores it.
EventAnswer = Callable[[EventBatch], tuple[int, str] | None]


@dataclass
class _Queued:
    body: str
    receipt: str = ""
    receive_count: int = 0
    visible_at: float = 0.0


@dataclass
class Runtime:
    runtime_id: str
    token: str
    runtime_key: str | None
    request: RegisterRequest


@dataclass
class FakeRuntimeApi:
    runtime_key: str | None = "brk_test-runtime-key-0123456789"  # None: an API that issues none
    join_tokens: set[str] = field(default_factory=lambda: {"bjt_test-join-token"})
    heartbeat_interval_seconds: int = 1
    visibility_seconds: int = 5
    runtimes: list[Runtime] = field(default_factory=list)
    heartbeats: list[HeartbeatRequest] = field(default_factory=list)
    claims: dict[str, str] = field(default_factory=dict)  # job id -> claim id
    renewals: list[tuple[str, LeaseRenewal]] = field(default_factory=list)
    events: dict[str, list[EventIn]] = field(default_factory=dict)  # job id -> stored events, in seq order
    event_answers: dict[str, EventAnswer] = field(default_factory=dict)
    refused_batches: list[tuple[str, int, int]] = field(default_factory=list)  # job id, events, status
    control_replies: list[tuple[str, ControlReply]] = field(default_factory=list)
    queues: dict[str, list[_Queued]] = field(default_factory=lambda: {"jobs": [], "control": []})

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._revoked: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeRuntimeApi":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what a test does -------------------------------------------------------------------

    def send(self, queue: str, message: JobMessage | ControlMessage) -> None:
        with self._lock:
            self.queues[queue].append(_Queued(QueueEnvelope(message=message).model_dump_json()))

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def registered(self) -> Runtime:
        """A runtime registered as a worker would have (its token authenticates)."""
        with self._lock:
            return self._register(RegisterRequest(join_token=next(iter(self.join_tokens))))

    def _register(self, request: RegisterRequest) -> Runtime:
        number = next(self._ids)
        runtime = Runtime(f"rt_{number}", f"brt_token-{number}", self.runtime_key, request)
        self.runtimes.append(runtime)
        return runtime

    def valid_token(self, token: str) -> bool:
        return any(r.token == token for r in self.runtimes) and token not in self._revoked

    def wait_for(self, condition: Callable[[], object], timeout: float = 20.0) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                value = condition()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError("the condition did not hold in time")

    def statuses(self, job_id: str) -> list[tuple[str, str]]:
        return [(event.step, event.status.value) for event in self.events.get(job_id, [])]

    # --- the routes -------------------------------------------------------------------------

    def answer(self, path: str, token: str | None, body: bytes) -> tuple[int, BaseModel | dict]:
        if path == "/v1/cloud/runtimes/register":
            request = RegisterRequest.model_validate_json(body)
            if request.join_token not in self.join_tokens:
                return 401, _error(401, "invalid, used-up or expired join token")
            runtime = self._register(request)
            return 201, RegisterResponse(
                runtime_id=runtime.runtime_id, runtime_token=runtime.token, runtime_key=runtime.runtime_key,
                workspace_id="ws_1", shared=False, jobs_queue_url="lease:jobs", control_queue_url="lease:control",
                heartbeat_interval_seconds=self.heartbeat_interval_seconds, visibility_seconds=self.visibility_seconds)
        if token is None or not self.valid_token(token):
            return 401, _error(401, "this runtime is no longer registered")
        if path == "/v1/cloud/runtimes/heartbeat":
            self.heartbeats.append(HeartbeatRequest.model_validate_json(body))
            return 200, HeartbeatResponse(ok=True, status="online",
                                          heartbeat_interval_seconds=self.heartbeat_interval_seconds)
        if path == "/v1/cloud/runtimes/lease":
            return 200, self._lease(LeaseRequest.model_validate_json(body))
        if path in ("/v1/cloud/runtimes/ack", "/v1/cloud/runtimes/visibility"):
            receipt = ReceiptRequest.model_validate_json(body)
            for message in list(self.queues[receipt.queue]):
                if message.receipt == receipt.receipt:
                    if path.endswith("/ack"):
                        self.queues[receipt.queue].remove(message)
                    else:
                        message.visible_at = time.time() + (receipt.visibility_seconds or 0)
            return 200, {"ok": True}
        if match := re.fullmatch(r"/v1/cloud/runtimes/jobs/([^/]+)/([^/]+)/(claim|lease|events)", path):
            job_id, action = match.group(2), match.group(3)
            if action == "claim":
                ClaimRequest.model_validate_json(body)
                claim_id = self.claims.setdefault(job_id, f"clm_{job_id}")
                return 200, ClaimResponse(claimed=True, status=JobStatus.running, claim_id=claim_id, next_seq=2)
            if action == "lease":
                self.renewals.append((job_id, LeaseRenewal.model_validate_json(body)))
                return 200, LeaseRenewed(ok=True)
            return self._events(job_id, EventBatch.model_validate_json(body))
        if match := re.fullmatch(r"/v1/cloud/runtimes/control/([^/]+)/([^/]+)/reply", path):
            self.control_replies.append((match.group(2), ControlReply.model_validate_json(body)))
            return 200, {"ok": True}
        return 404, _error(404, "no such route")

    def _lease(self, request: LeaseRequest) -> LeaseResponse:
        deadline = time.time() + request.wait_seconds
        while True:
            now = time.time()
            visible = [m for m in self.queues[request.queue] if m.visible_at <= now][:request.max_messages]
            if visible or now >= deadline:
                break
            self._lock.release()  # a long poll: let the test and the other routes in meanwhile
            try:
                time.sleep(0.02)
            finally:
                self._lock.acquire()
        for message in visible:
            message.receipt = f"rcpt-{next(self._ids)}"
            message.receive_count += 1
            message.visible_at = now + request.visibility_seconds
        return LeaseResponse.model_validate({"messages": [
            {"receipt": m.receipt, "receive_count": m.receive_count, "body": m.body} for m in visible]})

    def _events(self, job_id: str, batch: EventBatch) -> tuple[int, BaseModel | dict]:
        if batch.claim_id != self.claims.get(job_id):
            return 409, _error(409, "stale claim: the job is owned by another worker")
        refusal = self.event_answers.get(job_id, lambda batch: None)(batch)
        if refusal is not None:
            status, message = refusal
            self.refused_batches.append((job_id, len(batch.events), status))
            return status, _error(status, message)
        stored = self.events.setdefault(job_id, [])
        known = {event.seq for event in stored}
        fresh = [event for event in batch.events if event.seq not in known]
        stored.extend(fresh)
        stored.sort(key=lambda event: event.seq)
        return 200, EventBatchResult(accepted=len(fresh), duplicates=len(batch.events) - len(fresh),
                                     job_status=JobStatus.running)


def _error(status: int, message: str) -> dict:
    return {"success": False, "error": message, "status": status, "request_id": "req_test"}


def _handler(api: FakeRuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            authorization = self.headers.get("Authorization", "")
            token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
            try:
                with api._lock:
                    status, answer = api.answer(self.path, token, body)
            except ValidationError as exc:
                status, answer = 422, _error(422, str(exc.errors(include_input=False)[0]["msg"]))
            payload = answer.model_dump_json() if isinstance(answer, BaseModel) else json.dumps(answer)
            encoded = payload.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a stopped worker's long poll: nobody waits for the answer

        def log_message(self, *args) -> None:
            pass

    return Handler
