"""`ssh.forward` on the worker: a forward through a real asyncssh server to an HTTP service behind
it, reached only through `ssh.proxy` with a token the API signed, and closed with its job."""

import asyncio
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.contract.messages import ControlMessage
from app.contract.signing import sign_proxy_token
from app.contract.ssh.jobs import ForwardTokenClaims, SshFailure
from tests.support.ssh_jobs import PROXY_KEY, RecordedJob, forward_payload, recorded_job
from tests.support.ssh_server import SshTestServer
from workers.executors.base import ExecutorError
from workers.executors.ssh import FORWARDS, hold_forward, proxy

pytestmark = pytest.mark.anyio

SAFETY_TIMEOUT = 20  # seconds; a bound on waiting, never an assertion about speed


class _Dashboard(BaseHTTPRequestHandler):
    """A service only the SSH host can reach: answers with what it received."""

    seen: list[dict] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        received = {"method": self.command, "path": self.path, "host": self.headers["host"], "body": body.decode()}
        type(self).seen.append(received)
        payload = json.dumps(received).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("content-type", "application/json")
        self.send_header("x-dashboard", "yes")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dashboard():
    _Dashboard.seen = []
    service = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    thread = threading.Thread(target=service.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield service.server_address[1]
    service.shutdown()
    service.server_close()
    thread.join()


@pytest.fixture
async def server(tmp_path):
    async with SshTestServer(tmp_path / "host") as running:
        yield running


def token(job_id: str = "job-1", workspace_id: str = "ws-1", ttl: float = 60, key: str = PROXY_KEY,
          method: str = "GET") -> str:
    """As the API signs it for one request through a forward."""
    claims = ForwardTokenClaims.issue(job_id, workspace_id, "rt-1", method, time.time(), ttl)
    return sign_proxy_token(key, claims.model_dump())


def proxy_message(arguments: dict, job_id: str = "job-1", workspace_id: str = "ws-1") -> ControlMessage:
    return ControlMessage(request_id="req-1", workspace_id=workspace_id, job_id=job_id, action="ssh.proxy",
                          arguments=arguments, deadline=time.time() + 20)


async def opened(job: RecordedJob) -> asyncio.Future:
    """Start holding the forward; return once it is open."""
    holding = asyncio.ensure_future(hold_forward(job.ctx))
    async with asyncio.timeout(SAFETY_TIMEOUT):
        while not any(step == "forward" and status == "running" for step, status, _, _ in job.events):
            if holding.done():
                holding.result()  # raises what made it fail
            await asyncio.sleep(0.02)
    return holding


async def test_a_forward_carries_http_to_a_service_behind_the_host_and_closes_when_cancelled(server, dashboard):
    job = recorded_job("ssh.forward", forward_payload(server, dashboard))
    holding = await opened(job)
    socket_dir = FORWARDS["job-1"].forward.directory

    fetched = await proxy(proxy_message({"token": token(), "method": "GET", "path": "api/jobs", "query": "limit=5"}))
    posted = await proxy(proxy_message({"token": token(method="POST"), "method": "POST", "path": "api/actions",
                                        "headers": {"content-type": "text/plain", "connection": "close"},
                                        "body_b64": base64.b64encode(b"restart please").decode()}))

    # Served as the sandbox proxy serves: allowed headers only, neutralised for the API's origin.
    assert fetched["status"] == 200 and fetched["headers"]["content-type"] == "application/json"
    assert "x-dashboard" not in fetched["headers"]
    assert fetched["headers"]["content-security-policy"].startswith("sandbox")
    assert json.loads(base64.b64decode(fetched["body_b64"])) == {
        "method": "GET", "path": "/api/jobs?limit=5", "host": f"127.0.0.1:{dashboard}", "body": ""}
    assert posted["status"] == 201 and json.loads(base64.b64decode(posted["body_b64"]))["body"] == "restart please"
    assert server.forwards == [("127.0.0.1", dashboard)] * 2  # each request went over the SSH connection
    assert job.data("forward", "running")["target"] == f"127.0.0.1:{dashboard}"
    assert oct(socket_dir.stat().st_mode & 0o777) == "0o700"

    job.ctx.cancelled.set()
    async with asyncio.timeout(SAFETY_TIMEOUT):
        result = await holding
    assert result["forward"] == "dashboard" and "job-1" not in FORWARDS
    assert not Path(socket_dir).exists()
    with pytest.raises(ExecutorError) as closed:
        await proxy(proxy_message({"token": token(), "method": "GET", "path": ""}))
    assert closed.value.code == "not_running"
    assert len(_Dashboard.seen) == 2


@pytest.mark.parametrize(("make_token", "method", "message", "code"), [
    (lambda: token()[:-4] + "0000", "GET", "signature is invalid", "forbidden"),
    (lambda: token(ttl=-1), "GET", "has expired", "forbidden"),
    (lambda: token(job_id="job-2"), "GET", "not signed for this forward", "forbidden"),
    (lambda: token(workspace_id="ws-2"), "GET", "not signed for this forward", "forbidden"),
    (lambda: token(key="another-runtime"), "GET", "signature is invalid", "forbidden"),
    (lambda: token(method="GET"), "DELETE", "signed for another method", "forbidden"),
    (lambda: sign_proxy_token(PROXY_KEY, {"sandbox_id": "job-1", "exp": time.time() + 60}), "GET",
     "not a forward's token", "forbidden"),
    (token, "get", "invalid ssh.proxy arguments", "bad_request"),
], ids=["forged", "expired", "another-forward", "another-workspace", "another-runtime", "another-method",
        "a-sandbox-token", "malformed"])
async def test_only_requests_with_a_token_signed_for_this_forward_get_through(server, dashboard, make_token, method,
                                                                            message, code):
    job = recorded_job("ssh.forward", forward_payload(server, dashboard))
    holding = await opened(job)
    try:
        with pytest.raises(ExecutorError) as refused:
            await proxy(proxy_message({"token": make_token(), "method": method, "path": ""}))
        with pytest.raises(ExecutorError) as elsewhere:
            await proxy(proxy_message({"token": token(workspace_id="ws-2"), "method": "GET", "path": ""},
                                      workspace_id="ws-2"))
    finally:
        job.ctx.cancelled.set()
        await holding
    assert message in str(refused.value) and refused.value.code == code
    assert elsewhere.value.code == "not_running"  # another workspace does not see this forward at all
    assert _Dashboard.seen == []


async def test_a_forward_never_outlives_its_max_ttl(server, dashboard):
    job = recorded_job("ssh.forward", forward_payload(server, dashboard, max_ttl_seconds=60), ttl_seconds=7200)
    holding = await opened(job)
    job.ctx.cancelled.set()
    await holding

    assert job.ctx.deadline_changed.is_set() and job.ctx.expires_at <= time.time() + 60
    assert job.data("forward", "running")["expires_at"] == job.ctx.expires_at


async def test_a_forward_fails_when_its_ssh_connection_drops(server, dashboard):
    job = recorded_job("ssh.forward", forward_payload(server, dashboard))
    holding = await opened(job)

    server.drop_connections()

    async with asyncio.timeout(SAFETY_TIMEOUT):
        with pytest.raises(ExecutorError, match="the SSH connection to test-host closed"):
            await holding
    assert "job-1" not in FORWARDS


async def test_a_forward_to_a_host_it_is_not_allowed_on_fails_before_connecting(server, dashboard):
    job = recorded_job("ssh.forward", forward_payload(server, dashboard, hosts=["other-host"]))

    with pytest.raises(ExecutorError, match="forward dashboard may not be opened to host test-host"):
        await hold_forward(job.ctx)

    assert job.data("ssh", "error")["failure"] == SshFailure.not_allowed.value
    assert server.connections == 0


async def test_a_forward_token_is_good_for_one_request(server, dashboard):
    job = recorded_job("ssh.forward", forward_payload(server, dashboard))
    holding = await opened(job)
    once = token()
    try:
        first = await proxy(proxy_message({"token": once, "method": "GET", "path": "status"}))
        with pytest.raises(ExecutorError, match="already used") as replayed:
            await proxy(proxy_message({"token": once, "method": "GET", "path": "status"}))
    finally:
        job.ctx.cancelled.set()
        await holding
    assert first["status"] == 200 and replayed.value.code == "forbidden"
    assert len(_Dashboard.seen) == 1
