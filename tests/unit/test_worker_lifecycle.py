"""A whole worker (`workers.process.serve`: registration, heartbeats, the lease transport, claims,
the control endpoint) against an API over real HTTP (tests.support.runtime_api), with executors
written here: the runtime key, sealed secrets, what heartbeats report, releasing on stop, and
registering again."""

import asyncio
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field

import httpx
import pytest

from app.contract.messages import ControlMessage, JobMessage, JobType
from app.contract.sealing import RuntimeKeys, seal
from app.contract.signing import CONTROL_SIGNATURE_HEADER, sign_control_request
from tests.support.runtime_api import FakeRuntimeApi
from workers.config import WorkerConfig
from workers.executors.base import JobContext
from workers.executors.registry import ExecutorRegistry
from workers.process import serve
from workers.worker import ShutdownSignal

JOIN_TOKEN = "bjt_test-join-token"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("BERTH_WORKER_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def api():
    with FakeRuntimeApi() as running:
        yield running


@dataclass
class Executors:
    """Job types run by functions that record what they were given and wait as told."""

    contexts: dict[str, JobContext] = field(default_factory=dict)
    finish_short: asyncio.Event = field(default_factory=asyncio.Event)

    async def until_stopped(self, ctx: JobContext) -> dict:
        self.contexts[ctx.job_id] = ctx
        await ctx.cancelled.wait()
        return {}

    async def short(self, ctx: JobContext) -> dict:
        self.contexts[ctx.job_id] = ctx
        await self.finish_short.wait()
        return {"finished": True}

    async def update(self, message: ControlMessage) -> dict:
        return {"updated": message.job_id}

    def registry(self) -> ExecutorRegistry:
        return ExecutorRegistry({"mcp.run": self.until_stopped, "agent.run": self.short},
                                {"sandbox.update": self.update}, long_lived=frozenset({"mcp.run"}))


def settings(tmp_path, api: FakeRuntimeApi, **extra) -> WorkerConfig:
    values = {"api_url": api.url, "data_dir": tmp_path / "worker", "queue_mode": "lease", "join_token": JOIN_TOKEN,
              "heartbeat_interval_seconds": 1, "poll_wait_seconds": 1, "visibility_seconds": 6,
              "cancel_grace_seconds": 2, "flush_timeout_seconds": 3, "retry_max_seconds": 0.2, **extra}
    return WorkerConfig(**values)


async def running_worker(config: WorkerConfig, executors: Executors, scenario) -> tuple[int, object]:
    """Serve with `config` while `scenario(shutdown)` runs, then stop; the exit code and its result."""
    shutdown = ShutdownSignal()
    worker = asyncio.create_task(serve(config, executors.registry(), shutdown))
    try:
        result = await scenario(shutdown)
    finally:
        shutdown()
        code = await asyncio.wait_for(worker, 60)
    return code, result


async def until(api: FakeRuntimeApi, condition, timeout: float = 20.0):
    return await asyncio.to_thread(api.wait_for, condition, timeout)


def job(job_id: str, job_type: str = "mcp.run", secrets: str | None = None) -> JobMessage:
    return JobMessage(job_id=job_id, workspace_id="ws_1", type=JobType(job_type), expires_at=time.time() + 600,
                      secrets=secrets)


def sealing_key(api: FakeRuntimeApi) -> bytes:
    assert api.runtime_key is not None
    return RuntimeKeys.derive(api.runtime_key).sealing


# --- the runtime key -----------------------------------------------------------------------


def _control_status(url: str, key: str) -> int:
    body = ControlMessage(request_id=f"ctl_{time.monotonic_ns()}", workspace_id="ws_1", job_id="job_none",
                          action="sandbox.update", deadline=time.time() + 10).model_dump_json().encode()
    headers = {CONTROL_SIGNATURE_HEADER: sign_control_request(key, body, time.time())}
    return httpx.post(f"{url}/control", content=body, headers=headers, timeout=10).status_code


def test_the_runtime_key_is_kept_0600_and_verifies_control_requests_and_proxy_tokens(tmp_path, api):
    config = settings(tmp_path, api, control_listen="127.0.0.1:0")
    executors = Executors()

    async def scenario(shutdown):
        await until(api, lambda: api.heartbeats)
        runtime = api.runtimes[0]
        url = runtime.request.control_url
        signing = RuntimeKeys.derive(api.runtime_key).signing
        digest = hashlib.sha256(runtime.token.encode()).hexdigest()
        statuses = await asyncio.gather(asyncio.to_thread(_control_status, url, signing),
                                        asyncio.to_thread(_control_status, url, digest))
        api.send("jobs", job("job_key"))
        await until(api, lambda: "job_key" in executors.contexts)
        return statuses, executors.contexts["job_key"].proxy_key, signing

    code, (statuses, proxy_key, signing) = asyncio.run(running_worker(config, executors, scenario))
    assert code == 0
    assert statuses == [200, 401]  # the table's token digest no longer signs for this runtime
    assert proxy_key == signing
    saved = config.data_dir / "runtime.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["runtime_key"] == api.runtime_key


def test_until_the_api_issues_runtime_keys_the_token_digest_still_verifies(tmp_path):
    with FakeRuntimeApi(runtime_key=None) as api:
        config = settings(tmp_path, api, control_listen="127.0.0.1:0")

        async def scenario(shutdown):
            await until(api, lambda: api.heartbeats)
            runtime = api.runtimes[0]
            digest = hashlib.sha256(runtime.token.encode()).hexdigest()
            return await asyncio.to_thread(_control_status, runtime.request.control_url, digest)

        code, status = asyncio.run(running_worker(config, Executors(), scenario))
    assert (code, status) == (0, 200)


# --- sealed secrets ------------------------------------------------------------------------


def test_sealed_secrets_reach_the_executor_and_a_control_message_replaces_them(tmp_path, api, caplog):
    config = settings(tmp_path, api)
    executors = Executors()

    async def scenario(shutdown):
        await until(api, lambda: api.runtimes)
        key = sealing_key(api)
        api.send("jobs", job("job_env", secrets=seal(key, {"env": {"API_TOKEN": "t0p-s3cret"}}, "job_env")))
        await until(api, lambda: "job_env" in executors.contexts)
        first = dict(executors.contexts["job_env"].secrets)
        api.send("control", ControlMessage(
            request_id="ctl_env", workspace_id="ws_1", job_id="job_env", action="sandbox.update",
            deadline=time.time() + 30, secrets=seal(key, {"env": {"API_TOKEN": "n3w-s3cret"}}, "job_env")))
        await until(api, lambda: api.control_replies)
        return first, dict(executors.contexts["job_env"].secrets), api.control_replies[0][1]

    code, (first, replaced, reply) = asyncio.run(running_worker(config, executors, scenario))
    assert code == 0
    assert first == {"env": {"API_TOKEN": "t0p-s3cret"}}
    assert reply.ok and replaced == {"env": {"API_TOKEN": "n3w-s3cret"}}
    events = [event.model_dump() for event in api.events.get("job_env", [])]
    assert "s3cret" not in caplog.text and "s3cret" not in json.dumps(events)


@pytest.mark.parametrize("sealed_for", ["another job", "another runtime", "garbage"])
def test_secrets_that_do_not_open_fail_the_job_with_a_reason_and_the_worker_goes_on(tmp_path, api, sealed_for,
                                                                                     caplog):
    config = settings(tmp_path, api)
    executors = Executors()
    executors.finish_short.set()

    async def scenario(shutdown):
        await until(api, lambda: api.runtimes)
        secret = {"token": "hf_n0t-for-y0u"}
        sealed = {"another job": seal(sealing_key(api), secret, "job_other"),
                  "another runtime": seal(RuntimeKeys.derive("brk_someone-else").sealing, secret, "job_bad"),
                  "garbage": "v1.not-a-sealed-value"}[sealed_for]
        api.send("jobs", job("job_bad", "agent.run", secrets=sealed))
        await until(api, lambda: ("job", "error") in api.statuses("job_bad"))
        api.send("jobs", job("job_after", "agent.run"))
        await until(api, lambda: "job_after" in executors.contexts)
        return api.events["job_bad"][-1]

    code, final = asyncio.run(running_worker(config, executors, scenario))
    assert code == 0
    assert "job_bad" not in executors.contexts  # the executor never ran without its secrets
    assert final.message.startswith("the job's secrets cannot be opened on this runtime")
    assert "n0t-for-y0u" not in caplog.text


def test_a_runtime_without_a_runtime_key_fails_a_job_with_secrets_saying_so(tmp_path):
    with FakeRuntimeApi(runtime_key=None) as api:
        config = settings(tmp_path, api)
        executors = Executors()

        async def scenario(shutdown):
            await until(api, lambda: api.runtimes)
            api.send("jobs", job("job_sealed", "agent.run", secrets=seal(b"k" * 32, {"a": 1}, "job_sealed")))
            await until(api, lambda: ("job", "error") in api.statuses("job_sealed"))
            return api.events["job_sealed"][-1].message

        code, message = asyncio.run(running_worker(config, executors, scenario))
    assert code == 0 and "registered without a runtime key" in message


# --- heartbeats ----------------------------------------------------------------------------


def test_registration_and_heartbeats_say_what_runs_here_and_what_the_runtime_offers(tmp_path, api):
    tools = tmp_path / "tools"
    tools.mkdir()
    config = settings(tmp_path, api, sandbox_tool_dirs=[tools])
    executors = Executors()

    async def scenario(shutdown):
        await until(api, lambda: api.runtimes)
        api.send("jobs", job("job_beat"))
        claim = await until(api, lambda: api.claims.get("job_beat"))
        beat = await until(api, lambda: next((b for b in api.heartbeats if b.jobs), None))
        return claim, beat

    code, (claim, beat) = asyncio.run(running_worker(config, executors, scenario))
    assert code == 0
    offers = api.runtimes[0].request.offers
    assert offers is not None and offers.tool_dirs == [str(tools)] and offers.isolation in ("bubblewrap", "rlimits")
    assert [(j.workspace_id, j.job_id, j.claim_id) for j in beat.jobs] == [("ws_1", "job_beat", claim)]
    assert beat.offers == offers
    last = api.heartbeats[-1]
    assert last.exiting and last.jobs == [] and last.draining  # released before the last word


# --- stopping ------------------------------------------------------------------------------


def test_on_stop_a_long_lived_job_is_released_at_once_while_a_short_one_keeps_its_grace(tmp_path, api):
    config = settings(tmp_path, api, stop_grace_seconds=120, max_concurrent_jobs=2)
    executors = Executors()

    async def scenario(shutdown):
        await until(api, lambda: api.runtimes)
        api.send("jobs", job("job_sandbox", "mcp.run"))
        api.send("jobs", job("job_short", "agent.run"))
        await until(api, lambda: {"job_sandbox", "job_short"} <= set(executors.contexts))
        shutdown()
        released = await until(api, lambda: [r for job_id, r in api.renewals if job_id == "job_sandbox" and r.release])
        still_running = not executors.contexts["job_short"].cancelled.is_set()
        executors.finish_short.set()  # only now may the short job finish
        await until(api, lambda: ("job", "complete") in api.statuses("job_short"))
        return released, still_running

    code, (released, short_still_running) = asyncio.run(running_worker(config, executors, scenario))
    assert code == 0
    assert released[0].lease_seconds == 5 and short_still_running
    assert not any(r.release for job_id, r in api.renewals if job_id == "job_short")
    assert ("job", "complete") not in api.statuses("job_sandbox")  # released, not ended
    assert api.heartbeats[-1].exiting


# --- registering again ---------------------------------------------------------------------


def test_a_refused_saved_registration_is_replaced_with_the_join_token_from_the_environment(tmp_path, api,
                                                                                          monkeypatch):
    first = settings(tmp_path, api)

    async def register_once(shutdown):
        await until(api, lambda: api.heartbeats)

    assert asyncio.run(running_worker(first, Executors(), register_once))[0] == 0
    saved = json.loads(first.runtime_file.read_text())
    api.revoke(saved["runtime_token"])  # as after the API lost its state
    monkeypatch.setenv("BERTH_WORKER_JOIN_TOKEN", JOIN_TOKEN)
    again = WorkerConfig(api_url=api.url, data_dir=first.data_dir, queue_mode="lease", heartbeat_interval_seconds=1,
                         poll_wait_seconds=1, retry_max_seconds=0.2)

    async def registers_again(shutdown):
        await until(api, lambda: len(api.runtimes) == 2 and api.heartbeats[-1] and api.runtimes[1].token)

    assert asyncio.run(running_worker(again, Executors(), registers_again))[0] == 0
    resaved = json.loads(first.runtime_file.read_text())
    assert resaved["runtime_id"] == api.runtimes[1].runtime_id != saved["runtime_id"]
    assert resaved["runtime_key"] == api.runtime_key
