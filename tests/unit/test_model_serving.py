"""Serving at the worker level: `model.attach` and `model.preload` start a real engine process (the
fake vLLM, through the same command line the worker gives vLLM) on a snapshot pulled from the local
hub, and `model.proxy` forwards to it; the official `openai` client is the one talking."""

import asyncio
import base64
import json
import sys
from pathlib import Path

import httpx
import pytest
from huggingface_hub import constants
from openai import AsyncOpenAI

from app.contract.messages import ProxyResponse
from tests.support.hub import DEMO_LLAMA, make_demo_hub
from tests.support.model_jobs import FAKE_ENGINE, ModelJob, engine_pids, model_host
from workers.executors import models as model_executors
from workers.executors.base import ExecutorError
from workers.models.host import GpuPool, ModelHost

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as hub:
        yield hub


@pytest.fixture(autouse=True)
def hub_environment(hub, monkeypatch, tmp_path):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def serve_payload(name: str = "tiny", **engine) -> dict:
    return {"model": DEMO_LLAMA, "installation_id": "inst-1", "engine": {"served_model_name": name, **engine}}


_started: list[ModelJob] = []


@pytest.fixture(autouse=True)
async def stop_jobs_left_running():
    """A failing test still stops its engines."""
    yield
    for job in _started:
        if job.task is not None and not job.task.done():
            job.ctx.cancelled.set()
            await asyncio.wait({job.task}, timeout=15)
    _started.clear()


def attach(host: ModelHost, tmp_path: Path, payload: dict, job_id: str = "job-1",
           job_type: str = "model.attach") -> ModelJob:
    job = ModelJob(job_type, payload, tmp_path / job_id, job_id=job_id, host=host).start()
    _started.append(job)
    return job


def port_of(event) -> int:
    return int(event.data["endpoint"].rsplit(":", 1)[1].split("/")[0])


async def test_attach_serves_the_pulled_snapshot_with_vllms_arguments_until_it_is_cancelled(hub, tmp_path,
                                                                                          monkeypatch):
    host = model_host(tmp_path)
    for name, value in {"BERTH_WORKER_JOIN_TOKEN": "bjt_secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
                        "HF_TOKEN": "hf_host_secret"}.items():
        monkeypatch.setenv(name, value)
    job = attach(host, tmp_path, serve_payload(max_model_len=4096, gpu_memory_utilization=0.5))

    ready = await job.until_status("ready")

    assert job.statuses() == ["checking", "downloading", "verifying", "attached", "ready"]
    assert (ready.step, ready.status, ready.data["progress"]) == ("ready", "ok", 100)
    port = port_of(ready)
    assert ready.data["endpoint"] == f"http://127.0.0.1:{port}/v1" and ready.data["served_model_name"] == "tiny"
    async with httpx.AsyncClient() as client:
        launch = (await client.get(f"http://127.0.0.1:{port}/fake/launch")).json()
    snapshot = ready.data["local_path"]
    assert launch["argv"] == [snapshot, "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny",
                              "--tensor-parallel-size", "1", "--max-model-len", "4096",
                              "--gpu-memory-utilization", "0.5"]
    environment = launch["environment"]
    assert environment["HF_HUB_OFFLINE"] == "1" and environment["VLLM_NO_USAGE_STATS"] == "1"
    assert not {"BERTH_WORKER_JOIN_TOKEN", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"} & set(environment)
    state = await model_executors.status(job.control("model.status"))
    assert (state["installation_status"], state["engine"], state["engine_pid"]) == ("ready", "vllm", launch["pid"])

    result = await job.cancel()

    assert result["state"] == "stopped" and result["commit"] == hub.head_sha(DEMO_LLAMA)
    assert engine_pids(tmp_path) == []
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/health")


class ControlTransport(httpx.AsyncBaseTransport):
    """What the API's `/openai/v1` will do: each request becomes a `model.proxy` control message for
    the installation serving its model, answered buffered (the queue) or streamed (the direct
    control endpoint's `/control/stream`)."""

    def __init__(self, job: ModelJob, streamed: bool):
        self.job, self.streamed = job, streamed
        self.streamed_chunks = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        arguments = {"method": request.method, "path": request.url.path.removeprefix("/openai/"),
                     "query": request.url.query.decode(), "headers": dict(request.headers),
                     "body_b64": base64.b64encode(await request.aread()).decode()}
        message = self.job.control("model.proxy", arguments)
        if not self.streamed:
            answer = ProxyResponse(**await model_executors.proxy_request(message))
            return httpx.Response(answer.status, headers=answer.headers, content=base64.b64decode(answer.body_b64))
        events: asyncio.Queue[dict] = asyncio.Queue()
        forwarding = asyncio.ensure_future(model_executors.stream_request(message, events.put))
        start = await events.get()

        async def body():
            while True:
                event = await events.get()
                if event.get("body"):
                    self.streamed_chunks += 1
                    yield event["body"]
                if not event.get("more_body"):
                    break
            await forwarding

        headers = [(name.decode(), value.decode()) for name, value in start["headers"]]
        return httpx.Response(start["status"], headers=headers, content=body())


async def test_the_openai_client_works_through_model_proxy_buffered_and_streamed(hub, tmp_path):
    host = model_host(tmp_path)
    job = attach(host, tmp_path, serve_payload("tiny-chat"))
    await job.until_status("ready")
    buffered = AsyncOpenAI(base_url="http://berth.test/openai/v1", api_key="bak_caller_key",
                           http_client=httpx.AsyncClient(transport=ControlTransport(job, streamed=False)))
    transport = ControlTransport(job, streamed=True)
    streamed = AsyncOpenAI(base_url="http://berth.test/openai/v1", api_key="bak_caller_key",
                           http_client=httpx.AsyncClient(transport=transport))
    try:
        models = [model.id async for model in buffered.models.list()]
        chat = await buffered.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "hello there"}])
        completion = await buffered.completions.create(model="tiny-chat", prompt="once upon")
        embeddings = await buffered.embeddings.create(model="tiny-chat", input=["a", "b"])
        pieces = [chunk.choices[0].delta.content async for chunk in await streamed.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "one two three"}], stream=True)
            if chunk.choices and chunk.choices[0].delta.content]
        ready = next(e for e in job.events if e.installation_status == "ready")
        async with httpx.AsyncClient() as client:
            seen = (await client.get(f"http://127.0.0.1:{port_of(ready)}/fake/last-request")).json()["headers"]
    finally:
        await job.cancel()

    assert models == ["tiny-chat"]
    assert chat.choices[0].message.content == "echo: hello there" and chat.usage.total_tokens > 0
    assert completion.choices[0].text == "echo: once upon"
    assert len(embeddings.data) == 2 and embeddings.data[0].embedding != embeddings.data[1].embedding
    assert "".join(pieces) == "echo: one two three" and transport.streamed_chunks > 1
    assert "authorization" not in seen  # the caller's berth key never reaches the engine


async def test_model_proxy_reaches_only_the_openai_routes_of_a_ready_engine_of_the_callers_workspace(hub, tmp_path):
    host = model_host(tmp_path, "--fake-startup-delay", "1.5")
    job = attach(host, tmp_path, serve_payload())
    await job.until(lambda e: e.step == "engine" and e.status == "running")
    request = {"method": "GET", "path": "v1/models"}

    with pytest.raises(ExecutorError, match="attached, not ready") as starting:
        await model_executors.proxy_request(job.control("model.proxy", request))
    await job.until_status("ready")
    with pytest.raises(ExecutorError, match="only v1/models") as other_route:
        await model_executors.proxy_request(job.control("model.proxy", {"method": "POST",
                                                                        "path": "v1/load_lora_adapter"}))
    with pytest.raises(ExecutorError) as other_workspace:
        await model_executors.proxy_request(job.control("model.proxy", request, workspace_id="ws-other"))
    sent: list[dict] = []

    async def send(event: dict) -> None:
        sent.append(event)

    await model_executors.stream_request(job.control("model.proxy", request, workspace_id="ws-other"), send)
    answer = await model_executors.proxy_request(job.control("model.proxy", request))
    await job.cancel()

    assert starting.value.code == "not_running" and other_route.value.code == "bad_request"
    assert other_workspace.value.code == "not_running"
    assert sent[0]["status"] == 409 and (b"x-berth-control", b"reply") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["code"] == "not_running"
    assert answer["status"] == 200 and json.loads(base64.b64decode(answer["body_b64"]))["data"][0]["id"] == "tiny"


async def test_an_engine_that_never_becomes_healthy_fails_the_job_with_the_end_of_its_log(hub, tmp_path):
    host = model_host(tmp_path, "--fake-never-healthy")
    job = attach(host, tmp_path, serve_payload(startup_timeout_seconds=2))

    with pytest.raises(ExecutorError, match="did not become healthy within 2 s"):
        await job.result()

    failed = job.events[-1]
    assert (failed.data["installation_status"], failed.data["failure"]) == ("failed", "engine_failed")
    assert "Starting vLLM API server" in failed.message and "Starting vLLM API server" in failed.data["log_tail"]
    assert engine_pids(tmp_path) == []


async def test_an_engine_that_exits_while_loading_fails_the_job_at_once(hub, tmp_path):
    host = model_host(tmp_path, "--fake-fail-to-load")
    job = attach(host, tmp_path, serve_payload())

    with pytest.raises(ExecutorError, match="exited with code 1 before it became healthy") as failed:
        await job.result()

    assert "architecture is not supported" in str(failed.value)
    assert [e.step for e in job.events if e.step == "engine"] == ["engine"]  # started once, not restarted


async def test_an_engine_that_keeps_crashing_after_ready_is_restarted_up_to_its_limit(hub, tmp_path):
    host = model_host(tmp_path, "--fake-crash-after-ready", "0.3")
    job = attach(host, tmp_path, serve_payload(max_restarts=1))

    with pytest.raises(ExecutorError, match=r"gave up after 1 restart\(s\)"):
        await job.result(timeout=60)

    steps = [(e.step, e.status) for e in job.events if e.step in ("engine", "ready", "failed")]
    assert steps == [("engine", "running"), ("ready", "ok"), ("engine", "error"), ("engine", "running"),
                     ("ready", "ok"), ("failed", "error")]
    restart = next(e for e in job.events if e.step == "engine" and e.status == "error")
    assert "exited with code 3" in restart.message and "(1 of 1)" in restart.message
    assert restart.data["installation_status"] == "attached" and "endpoint" not in restart.data
    assert "EngineCore encountered a fatal error" in job.events[-1].data["log_tail"]
    assert engine_pids(tmp_path) == []


async def test_an_engine_that_crashes_once_is_serving_again_after_its_restart(hub, tmp_path):
    crashed = tmp_path / "crashed-once"
    host = model_host(tmp_path, "--fake-crash-after-ready", "0.3", "--fake-crash-once-file", str(crashed))
    job = attach(host, tmp_path, serve_payload())

    back = await job.until(lambda e: e.installation_status == "ready" and e.data.get("restarts") == 1)
    answer = await model_executors.proxy_request(job.control("model.proxy", {"method": "GET", "path": "v1/models"}))
    await job.cancel()

    assert crashed.exists() and back.data["endpoint"] and answer["status"] == 200


async def test_preload_proves_the_engine_serves_the_model_then_stops_it(hub, tmp_path):
    host = model_host(tmp_path)

    result = await attach(host, tmp_path, serve_payload(), job_type="model.preload").result()

    assert result["state"] == "healthy" and result["healthy_after_seconds"] > 0
    assert result["commit"] == hub.head_sha(DEMO_LLAMA) and engine_pids(tmp_path) == []


async def test_engines_get_their_own_gpus_and_give_them_back(hub, tmp_path):
    host = ModelHost(tmp_path / "models", {"vllm": [sys.executable, str(FAKE_ENGINE)]}, gpus=GpuPool(["0", "1", "2"]))
    first = attach(host, tmp_path, serve_payload("first", tensor_parallel_size=2), job_id="job-1")
    ready = await first.until_status("ready")
    second = attach(host, tmp_path, serve_payload("second", tensor_parallel_size=2), job_id="job-2")

    with pytest.raises(ExecutorError, match=r"needs 2 GPU\(s\); 1 of this runtime's 3 are free"):
        await second.result()
    async with httpx.AsyncClient() as client:
        launch = (await client.get(f"http://127.0.0.1:{port_of(ready)}/fake/launch")).json()
    await first.cancel()
    third = attach(host, tmp_path, serve_payload("third", tensor_parallel_size=2), job_id="job-3")
    third_ready = await third.until_status("ready")
    await third.cancel()

    assert launch["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert launch["argv"][launch["argv"].index("--tensor-parallel-size") + 1] == "2"
    assert second.events[-1].data["failure"] == "no_gpu"
    assert "on GPU 0,1" in next(e.message for e in third.events if e.step == "engine") and third_ready


async def test_attach_fails_before_pulling_when_the_runtime_cannot_start_the_engine(hub, tmp_path):
    host = ModelHost(tmp_path / "models", {"vllm": ["/nonexistent/vllm", "serve"]})
    before = len(hub.requests)
    job = attach(host, tmp_path, serve_payload())

    with pytest.raises(ExecutorError, match="cannot start vllm"):
        await job.result()

    assert job.events[-1].data["failure"] == "engine_unavailable" and hub.requests[before:] == []
