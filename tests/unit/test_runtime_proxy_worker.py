"""The runtime proxy as the worker answers it: a response the API can serve on its origin as is
(decoded bodies without a stale encoding, no cookies, active content neutralised), and proxy
tokens good for one request of one method to one sandbox (issue 9)."""

import asyncio
import base64
import json
import time
import uuid

import pytest

from app.contract.messages import ControlMessage, ProxyRequest
from app.contract.policy import SandboxPolicy
from app.contract.signing import proxy_token_claims, sign_proxy_token
from tests.support.mcp_servers.echo_server import PAGE
from tests.support.sandbox_fixtures import ECHO_SERVER, anyio_backend, require_bubblewrap  # noqa: F401
from workers.executors.base import ExecutorError, JobContext
from workers.executors.sandbox import LIVE, proxy, run_server
from workers.sandbox.session import ARGUMENT_CHECKS

pytestmark = pytest.mark.anyio
KEY = "runtime-token-digest"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "berth-test", "version": "1"}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture
async def sandbox(tmp_path, require_bubblewrap):
    """A streamable-HTTP echo server running as a sandbox job on this worker; its job id."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"

    async def emit(step, status, message="", data=None):
        pass

    work_dir = tmp_path / "job"
    (work_dir / "sandbox").mkdir(parents=True)
    (work_dir / "sandbox" / ECHO_SERVER.name).write_bytes(ECHO_SERVER.read_bytes())
    ctx = JobContext(job_id=job_id, workspace_id="ws-1", job_type="mcp.run",
                     payload={"start_command": "python echo_server.py", "transport": "http"},
                     expires_at=time.time() + 600, emit=emit, work_dir=str(work_dir),
                     policy=SandboxPolicy(network=True), proxy_key=KEY)
    running = asyncio.create_task(run_server(ctx))
    async with asyncio.timeout(60):
        while not (job_id in LIVE and LIVE[job_id].state == "running"):
            assert not running.done(), running.exception()
            await asyncio.sleep(0.05)
    yield job_id
    ctx.cancelled.set()
    await running
    await ARGUMENT_CHECKS.close()


def token(sandbox_id: str, method: str, now: float | None = None, **changes) -> str:
    claims = proxy_token_claims(sandbox_id, "ws-1", "rt-1", method, now or time.time(), 300) | changes
    return sign_proxy_token(KEY, claims)


async def send(sandbox_id: str, method: str, path: str, proxy_token: str, headers=None, body: bytes = b"") -> dict:
    request = ProxyRequest(token=proxy_token, method=method, path=path, headers=headers or {},
                           body_b64=base64.b64encode(body).decode())
    message = ControlMessage(request_id=uuid.uuid4().hex, workspace_id="ws-1", job_id=sandbox_id, action="proxy",
                             arguments=request.model_dump(), deadline=time.time() + 30)
    return await proxy(message)


async def test_a_compressed_answer_comes_back_decoded_and_labelled_so(sandbox):
    answer = await send(sandbox, "GET", "web/compressed", token(sandbox, "GET"), {"accept-encoding": "gzip, br"})

    body = base64.b64decode(answer["body_b64"])
    assert answer["status"] == 200
    assert "content-encoding" not in {name.lower() for name in answer["headers"]}
    assert json.loads(body)["text"].startswith("compressible")


async def test_a_page_cannot_act_on_the_apis_origin(sandbox):
    answer = await send(sandbox, "GET", "web/page", token(sandbox, "GET"))

    headers = {name.lower(): value for name, value in answer["headers"].items()}
    assert base64.b64decode(answer["body_b64"]) == PAGE  # the body as served, only neutralised
    for dropped in ("set-cookie", "clear-site-data", "access-control-allow-origin", "x-served-by"):
        assert dropped not in headers
    assert headers["content-security-policy"].startswith("sandbox")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"] == "attachment"


async def test_an_mcp_answer_passes_unchanged_but_for_the_neutralising_headers(sandbox):
    answer = await send(sandbox, "POST", "mcp", token(sandbox, "POST"), MCP_HEADERS, json.dumps(INITIALIZE).encode())

    headers = {name.lower(): value for name, value in answer["headers"].items()}
    assert answer["status"] == 200 and '"serverInfo"' in base64.b64decode(answer["body_b64"]).decode()
    assert headers["content-type"].startswith(("application/json", "text/event-stream"))
    assert "content-disposition" not in headers


@pytest.mark.parametrize(("forge", "reason"), [
    (lambda sandbox: token(sandbox, "POST")[:-4] + "0000", "signature is invalid"),
    (lambda sandbox: token(sandbox, "POST", now=time.time() - 400), "expired"),
    (lambda sandbox: token("job-another", "POST"), "another sandbox"),
    (lambda sandbox: token(sandbox, "GET"), "signed for GET requests, not POST"),
    (lambda sandbox: sign_proxy_token(KEY, {"sandbox_id": sandbox, "workspace_id": "ws-1", "runtime_id": "rt-1",
                                            "exp": time.time() + 60}), "lacks its sandbox, method or nonce"),
    (lambda sandbox: token(sandbox, "POST", exp=time.time() + 86400), "longer than a proxy token may be"),
])
async def test_a_proxy_token_that_does_not_fit_the_request_is_refused(sandbox, forge, reason):
    with pytest.raises(ExecutorError, match=reason) as refused:
        await send(sandbox, "POST", "mcp", forge(sandbox), MCP_HEADERS, json.dumps(INITIALIZE).encode())

    assert refused.value.code == "forbidden"


async def test_a_proxy_token_is_good_for_one_request(sandbox):
    once = token(sandbox, "POST")
    first = await send(sandbox, "POST", "mcp", once, MCP_HEADERS, json.dumps(INITIALIZE).encode())

    with pytest.raises(ExecutorError, match="used already") as replayed:
        await send(sandbox, "POST", "mcp", once, MCP_HEADERS, json.dumps(INITIALIZE).encode())

    assert first["status"] == 200 and replayed.value.code == "forbidden"
