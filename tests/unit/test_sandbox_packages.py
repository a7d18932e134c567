"""The sandbox executor with the worker's package cache (issue 13, "MCP servers from packages"):
a payload's package, or the `uvx`/`npx` start command that means it, is installed outside the
sandbox from the real registries, reported as `package` events before the server runs, and run
in the real sandbox with its files read-only; the version stays leased while the server runs.
Also the sealed env a job carries, laid over the payload's at each start."""

import asyncio
import json
import time
from pathlib import Path

import pytest

from app.contract.messages import ControlMessage
from app.contract.policy import SandboxPolicy
from tests.support.package_fixtures import TIME_SPEC, public_cache
from tests.support.registry_server import MISSING_PACKAGE
from tests.support.sandbox_fixtures import (  # noqa: F401 (fixtures)
    EVERYTHING_ENTRY,
    NPM_PREFIX,
    anyio_backend,
    everything_server,
    require_bubblewrap,
)
from workers.executors import sandbox
from workers.executors.base import ExecutorError, JobContext, WorkerHost
from workers.packages import PackageCache
from workers.sandbox.session import ARGUMENT_CHECKS

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("require_bubblewrap")]
TIME_COMMAND = f"uvx mcp-server-time=={TIME_SPEC.version}"


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """One cache for the module, so each published server is downloaded once per run."""
    return tmp_path_factory.mktemp("package-cache")


@pytest.fixture
async def checks_closed():
    yield
    await ARGUMENT_CHECKS.close()  # its checker processes belong to this test's event loop


class Job:
    """A sandbox job run by the executor as the worker runs it, its events collected."""

    def __init__(self, tmp_path: Path, payload: dict, packages: PackageCache | None,
                 policy: SandboxPolicy | None = None, secrets: dict | None = None,
                 tool_dirs: tuple[str, ...] = ()):
        self.events: list[tuple[str, str, str, dict]] = []

        async def emit(step, status, message="", data=None):
            self.events.append((step, status, message, data or {}))

        self.ctx = JobContext(job_id=f"job-{time.monotonic_ns()}", workspace_id="ws-1", job_type="mcp.run",
                              payload=payload, expires_at=time.time() + 600, emit=emit,
                              work_dir=str(tmp_path / "job"), policy=policy or SandboxPolicy(),
                              secrets=secrets or {}, sandbox_tool_dirs=tool_dirs,
                              host=WorkerHost(packages=packages))
        self.task: asyncio.Task | None = None

    async def running(self, timeout: float = 300) -> "Job":
        self.task = asyncio.ensure_future(sandbox.run_server(self.ctx))
        async with asyncio.timeout(timeout):
            while not (self.ctx.job_id in sandbox.LIVE and sandbox.LIVE[self.ctx.job_id].state == "running"):
                if self.task.done():
                    self.task.result()  # its failure
                    raise AssertionError(f"the job ended without running: {self.events}")
                await asyncio.sleep(0.05)
        return self

    async def control(self, action: str, arguments: dict | None = None) -> dict:
        message = ControlMessage(request_id=f"ctl-{time.monotonic_ns()}", workspace_id="ws-1", job_id=self.ctx.job_id,
                                 action=action, arguments=arguments or {}, deadline=time.time() + 60)
        return await sandbox.CONTROL_HANDLERS[action](message)

    async def end(self) -> dict:
        self.ctx.cancelled.set()
        assert self.task is not None
        return await self.task

    def steps(self) -> list[tuple[str, str]]:
        return [(step, status) for step, status, _, _ in self.events]

    def package_events(self) -> list[dict]:
        return [data for step, _, _, data in self.events if step == "package"]


async def test_a_uvx_start_command_installs_outside_the_sandbox_then_runs_inside_it(shared_root, tmp_path,
                                                                                    checks_closed):
    cache = public_cache(shared_root)
    job = await Job(tmp_path, {"start_command": TIME_COMMAND}, cache).running()
    listed = await job.control("tools.list")
    called = await job.control("tools.call", {"name": "get_current_time", "arguments": {"timezone": "Europe/Paris"}})
    inspected = await job.control("sandbox.inspect")
    in_use_while_running = [entry.in_use for entry in cache.summary().entries]
    result = await job.end()

    steps = job.steps()
    first_sandbox_event = steps.index(("sandbox", "running"))
    assert steps[0][0] == "package" and all(step == "package" for step, _ in steps[:first_sandbox_event])
    assert job.package_events()[-1]["stage"] == "done"
    running = next(data for step, status, _, data in job.events if (step, status) == ("sandbox", "running"))
    assert running["package"] == f"pypi mcp-server-time=={TIME_SPEC.version}"
    assert running["isolation"] == "bubblewrap" and running["limits"]["network"] == "none"
    assert {tool["name"] for tool in listed["tools"]} == {"get_current_time", "convert_time"}
    assert called["ok"] is True and "Europe/Paris" in json.dumps(called["result"])
    assert inspected["state"] == "running" and inspected["pids"]
    assert in_use_while_running == [True] and [entry.in_use for entry in cache.summary().entries] == [False]
    assert result["state"] == "ended"


async def test_a_restart_of_the_same_version_installs_nothing(shared_root, tmp_path, checks_closed):
    cache = public_cache(shared_root)
    first = await Job(tmp_path / "first", {"start_command": TIME_COMMAND}, cache).running()
    await first.end()
    runs = cache.installer_runs
    job = await Job(tmp_path / "second", {"start_command": TIME_COMMAND}, cache).running()
    restarted = await job.control("sandbox.restart")
    called = await job.control("tools.call", {"name": "get_current_time", "arguments": {"timezone": "UTC"}})
    await job.end()

    assert restarted == {"state": "running"} and called["ok"] is True
    assert cache.installer_runs == runs
    assert [(event["stage"], event["cached"]) for event in job.package_events()] == [("done", True), ("done", True)]


async def test_a_package_that_does_not_exist_fails_the_job_with_the_installers_words(tmp_path, checks_closed):
    job = Job(tmp_path, {"start_command": f"npx -y {MISSING_PACKAGE}@1.0.0"}, public_cache(tmp_path / "cache"))

    with pytest.raises(ExecutorError, match="the package did not install: .*404") as failed:
        await job.running()

    assert failed.value.code == "failed" and "npm error" in str(failed.value)
    assert job.steps()[-1] == ("sandbox", "error") and job.events[-1][3]["state"] == "failed"
    assert ("sandbox", "running") not in job.steps()


@pytest.mark.parametrize("payload, packages, refusal, code", [
    ({"package": {"registryType": "oci", "identifier": "docker.io/mcp/time", "version": "1.0.0"}}, True,
     "package refused: oci packages run in a container engine", "forbidden"),
    ({"start_command": TIME_COMMAND}, False, "package refused: this runtime does not install packages", "forbidden"),
    ({"package": {"registryType": "pypi", "identifier": "mcp-server-time", "version": TIME_SPEC.version,
                  "environmentVariables": [{"name": "TZ_TOKEN", "isRequired": True}]}}, True,
     "the package cannot start: required environment variable not set: TZ_TOKEN", "bad_request"),
    ({"start_command": "npx --registry=https://evil.test/ some-server"}, True,
     "invalid sandbox payload: .*npx option '--registry=https://evil.test/' is not supported", "bad_request"),
])
async def test_packages_this_runtime_will_not_run_are_refused_saying_why(shared_root, tmp_path, checks_closed,
                                                                         payload, packages, refusal, code):
    job = Job(tmp_path, payload, public_cache(shared_root) if packages else None)

    with pytest.raises(ExecutorError, match=refusal) as refused:
        await sandbox.run_server(job.ctx)

    assert refused.value.code == code


async def test_the_policy_judges_the_command_before_anything_is_downloaded(tmp_path, checks_closed):
    cache = public_cache(tmp_path / "cache")
    no_npx = SandboxPolicy(command_allowlist=["node", "python3"])
    job = Job(tmp_path, {"package": {"registryType": "npm", "identifier": "@modelcontextprotocol/server-everything",
                                     "version": "2026.8.31"}}, cache, policy=no_npx)

    with pytest.raises(ExecutorError, match="sandbox refused: executable 'npx' is not allowed") as refused:
        await sandbox.run_server(job.ctx)

    assert refused.value.code == "forbidden"
    assert cache.installer_runs == 0 and job.package_events() == []


async def test_a_job_stopped_while_its_package_installs_ends_at_once(tmp_path, checks_closed):
    cache = public_cache(tmp_path / "cache")
    job = Job(tmp_path, {"start_command": TIME_COMMAND}, cache)
    job.ctx.cancelled.set()  # stopped before the install could finish

    result = await sandbox.run_server(job.ctx)

    assert result["state"] == "ended" and ("sandbox", "running") not in job.steps()
    assert all(not entry.in_use for entry in cache.summary().entries)


@pytest.mark.usefixtures("everything_server")
async def test_the_sealed_env_is_the_servers_env_at_each_start(tmp_path, checks_closed):
    payload = {"start_command": f"node {NPM_PREFIX / EVERYTHING_ENTRY}"}
    job = await Job(tmp_path, payload, None, secrets={"env": {"GREETING": "hello", "API_KEY": "s3cret"}},
                    tool_dirs=(str(NPM_PREFIX),)).running()

    async def server_env() -> dict:
        answer = await job.control("tools.call", {"name": "get-env", "arguments": {}})
        return json.loads(answer["result"]["content"][0]["text"])

    first = await server_env()
    job.ctx.secrets = {"env": {"GREETING": "hello", "API_KEY": "rotated"}}  # as a control message's replace them
    await job.control("sandbox.restart")
    restarted = await server_env()
    await job.end()

    assert (first["GREETING"], first["API_KEY"]) == ("hello", "s3cret")
    assert (restarted["GREETING"], restarted["API_KEY"]) == ("hello", "rotated")
    assert not any("s3cret" in message or "s3cret" in json.dumps(data) for _, _, message, data in job.events)
