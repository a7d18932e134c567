"""`POST /control/stream` on the worker's direct control endpoint, served by uvicorn: the signed
`model.proxy` request the API makes for a streamed completion is answered with the engine's
Server-Sent Events as they come (the fake vLLM on a snapshot from the local hub); the request is
checked as `/control` checks it; a deadline ends a stream that has not begun with 504 and cuts
one that has."""

import asyncio
import base64
import hashlib
import json
import time
import uuid

import httpx
import pytest
from huggingface_hub import constants

from app.contract.messages import CONTROL_ANSWER_HEADER, CONTROL_STREAM_PATH, ControlMessage, ControlReply
from app.contract.signing import CONTROL_SIGNATURE_HEADER, sign_control_request
from tests.support.hub import DEMO_LLAMA, make_demo_hub
from tests.support.model_jobs import ModelJob, model_host
from workers.control_server import ControlServer
from workers.executors.base import WorkerHost
from workers.executors.registry import ExecutorRegistry, Send

pytestmark = pytest.mark.anyio
KEY = hashlib.sha256(b"brk_the-runtime-key").hexdigest()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as hub:
        yield hub


@pytest.fixture
def hub_environment(hub, monkeypatch, tmp_path):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
async def control_server():
    server = ControlServer("127.0.0.1", 0)
    await server.start()
    yield server
    await server.stop()


async def _buffered_only(message: ControlMessage) -> ControlReply:
    return ControlReply(ok=True, result={"action": message.action})


def message(job_id: str, action: str = "model.proxy", arguments: dict | None = None,
            seconds: float = 30) -> bytes:
    return ControlMessage(request_id=f"ctl_{uuid.uuid4().hex}", workspace_id="ws-1", job_id=job_id, action=action,
                          arguments=arguments or {}, deadline=time.time() + seconds).model_dump_json().encode()


def signed(body: bytes) -> dict[str, str]:
    """What the API adds: the signature over the body, made now with the runtime's signing key."""
    return {CONTROL_SIGNATURE_HEADER: sign_control_request(KEY, body, time.time()),
            "content-type": "application/json"}


def chat_request(text: str) -> dict:
    """`model.proxy` arguments (app.contract.models.EngineRequest) for a streamed chat completion."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": text}], "stream": True}
    return {"method": "POST", "path": "v1/chat/completions", "headers": {"content-type": "application/json"},
            "body_b64": base64.b64encode(json.dumps(body).encode()).decode()}


async def test_a_streamed_completion_arrives_in_pieces_and_ends_with_done(hub, hub_environment, tmp_path,
                                                                          control_server):
    host = model_host(tmp_path)
    registry = ExecutorRegistry.load(("workers.executors.models",), WorkerHost(models=host))
    control_server.endpoint.attach(KEY, _buffered_only, registry.stream_handler)
    job = ModelJob("model.attach", {"model": DEMO_LLAMA, "installation_id": "inst-1",
                                    "engine": {"served_model_name": "tiny"}}, tmp_path / "job-1", host=host).start()
    try:
        await job.until_status("ready", timeout=60)
        body = message(job.job_id, arguments=chat_request("one two three four five"))
        chunks: list[bytes] = []
        async with httpx.AsyncClient(base_url=control_server.url, timeout=30) as client:
            async with client.stream("POST", CONTROL_STREAM_PATH, content=body, headers=signed(body)) as response:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
            replayed = await client.post(CONTROL_STREAM_PATH, content=body, headers=signed(body))
            unsigned_body = message(job.job_id, arguments=chat_request("hello"))
            unsigned = await client.post(CONTROL_STREAM_PATH, content=unsigned_body)
            status_body = message(job.job_id, action="model.status")
            not_streamed = await client.post(CONTROL_STREAM_PATH, content=status_body, headers=signed(status_body))
            other_body = message(job.job_id, arguments=chat_request("hello"))
            other_workspace = json.loads(other_body) | {"workspace_id": "ws-other"}
            other_body = json.dumps(other_workspace).encode()
            refused = await client.post(CONTROL_STREAM_PATH, content=other_body, headers=signed(other_body))
    finally:
        await job.cancel()

    assert response.status_code == 200
    assert response.headers[CONTROL_ANSWER_HEADER] == "proxied"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert len(chunks) > 1  # as the engine sent them, not gathered first
    events = [line.removeprefix("data: ") for line in b"".join(chunks).decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    words = [json.loads(event)["choices"][0]["delta"].get("content", "") for event in events[:-1]]
    assert "".join(words) == "echo: one two three four five"
    assert replayed.status_code == 401 and "already received" in replayed.json()["error"]
    assert unsigned.status_code == 401
    assert not_streamed.status_code == 400
    assert "model.status is not answered as a stream" in not_streamed.json()["error"]
    # Nothing forwarded: a ControlReply, with the status the API gives its code.
    assert refused.status_code == 409 and refused.headers[CONTROL_ANSWER_HEADER] == "reply"
    assert ControlReply.model_validate(refused.json()).code == "not_running"


async def _never_answers(message: ControlMessage, send: Send) -> None:
    await asyncio.Event().wait()


async def _answers_then_stalls(message: ControlMessage, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (CONTROL_ANSWER_HEADER.encode(), b"proxied")]})
    await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
    await asyncio.Event().wait()


async def test_a_deadline_before_the_answer_began_is_504_and_after_it_ends_the_body(control_server):
    handlers = {"model.proxy": _never_answers, "model.status": _answers_then_stalls}
    control_server.endpoint.attach(KEY, _buffered_only, handlers.get)

    async with httpx.AsyncClient(base_url=control_server.url, timeout=30) as client:
        silent = message("job-1", seconds=0.5)
        late = await client.post(CONTROL_STREAM_PATH, content=silent, headers=signed(silent))
        stalled = message("job-1", action="model.status", seconds=0.5)
        cut = await client.post(CONTROL_STREAM_PATH, content=stalled, headers=signed(stalled))

    assert late.status_code == 504 and "did not start answering before its deadline" in late.json()["error"]
    assert cut.status_code == 200 and cut.content == b"data: first\n\n"  # ended where it was, not broken off
