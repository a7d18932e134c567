"""What confines a sandbox beyond its namespaces, and what it reports: isolation or refusal,
the /sandbox and file-size caps, a bounded stderr, argument checks that cannot freeze the
worker, and start failures that say why (issue 9, "Sandboxes"; issue 11, clear errors)."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from app.contract.policy import SandboxPolicy
from tests.support.sandbox_fixtures import (  # noqa: F401 (fixtures)
    ECHO_SERVER,
    anyio_backend,
    require_bubblewrap,
    start_sandbox,
    without_bubblewrap,
)
from workers.executors import registry
from workers.executors.base import ExecutorError, JobContext
from workers.executors.sandbox import run_server
from workers.sandbox import cgroups
from workers.sandbox import session as session_module
from workers.sandbox.session import ARGUMENT_CHECKS, SandboxRefused, SandboxStartFailed
from workers.sandbox.stderr import STDERR_KEEP_BYTES

pytestmark = pytest.mark.anyio


def _job(tmp_path: Path, command: str, allow_unisolated: bool = False) -> tuple[JobContext, list[tuple]]:
    events: list[tuple] = []

    async def emit(step, status, message="", data=None):
        events.append((step, status, message, data or {}))

    work_dir = tmp_path / "job"
    (work_dir / "sandbox").mkdir(parents=True)
    (work_dir / "sandbox" / ECHO_SERVER.name).write_bytes(ECHO_SERVER.read_bytes())
    ctx = JobContext(job_id="job-1", workspace_id="ws-1", job_type="mcp.run", payload={"start_command": command},
                     expires_at=time.time() + 600, emit=emit, work_dir=str(work_dir), policy=SandboxPolicy(),
                     allow_unisolated_sandboxes=allow_unisolated)
    return ctx, events


async def test_without_bubblewrap_a_runtime_runs_no_sandbox_and_says_so(start_sandbox, without_bubblewrap, tmp_path):
    with pytest.raises(SandboxRefused, match="cannot isolate sandboxes .*bubblewrap is not installed"):
        await start_sandbox()

    ctx, events = _job(tmp_path, "python echo_server.py")
    with pytest.raises(ExecutorError, match="refused by this runtime: .*cannot isolate sandboxes") as refused:
        await run_server(ctx)

    assert refused.value.code == "failed"
    [(step, status, _, data)] = [event for event in events if event[0] == "sandbox"]
    assert (step, status, data["state"], data["isolation"]) == ("sandbox", "error", "failed", "none")
    # The runtime reports it, for the API's dispatch.
    assert registry.sandbox_labels(allow_unisolated=False)["sandbox"] == "none"
    assert registry.sandbox_labels(allow_unisolated=True)["sandbox"] == "rlimits"


async def test_an_owner_may_accept_unisolated_sandboxes(start_sandbox, without_bubblewrap, monkeypatch):
    # As a non-root worker does it: the server runs as the worker's uid (a root worker's sandbox
    # uid could not reach this test's interpreter under /root).
    monkeypatch.setattr(session_module, "claim_sandbox_uid", lambda: None)

    session = await start_sandbox(allow_unisolated=True)

    assert session.isolation == "rlimits"
    assert session.limits["network"] == "host" and session.limits["sandbox_disk_mb"] is None
    assert (await session.call_tool("add", {"a": 1, "b": 2}))["ok"] is True


async def test_writing_past_the_sandbox_disk_cap_fails_and_the_host_disk_is_untouched(start_sandbox,
                                                                                     require_bubblewrap):
    session = await start_sandbox(policy=SandboxPolicy(disk_mb=8, max_file_mb=64))

    written = await session.call_tool("write_file", {"path": "/sandbox/big", "mb": 32})
    small = await session.call_tool("write_file", {"path": "/tmp/small", "mb": 1})

    assert written["ok"] is False and "No space left on device" in written["error"]
    assert session.limits["sandbox_disk_mb"] == 8
    assert not (Path(session.workdir) / "big").exists()  # /sandbox is not the host's directory
    assert small["ok"] is True and session.alive


async def test_one_file_past_the_file_size_limit_fails(start_sandbox, require_bubblewrap):
    session = await start_sandbox(policy=SandboxPolicy(max_file_mb=4, disk_mb=64))

    written = await session.call_tool("write_file", {"path": "/sandbox/big", "mb": 10})

    assert written["ok"] is False and "File too large" in written["error"] and "after 4 MB" in written["error"]
    assert session.limits["file_mb"] == 4


async def test_a_chatty_stderr_costs_the_worker_a_bounded_tail(start_sandbox):
    session = await start_sandbox()

    spewed = await session.call_tool("spew_stderr", {"mb": 16}, timeout=60)
    await asyncio.sleep(0.1)  # the rest of the pipe drains on the event loop
    kept, total = session.stderr_bytes

    assert spewed["ok"] is True
    assert total > 16 * 1024 * 1024 and kept <= STDERR_KEEP_BYTES
    assert session.limits["stderr_kept_bytes"] == STDERR_KEEP_BYTES
    assert (await session.call_tool("echo", {"text": "still here"}))["ok"] is True
    os.kill(session.processes()[-1], 9)  # the server: its stderr's end is why it stopped
    while session.alive:
        await asyncio.sleep(0.05)
    assert session.stop_reason.startswith("server exited") and "the last line" in session.stop_reason


async def test_the_limits_in_force_are_reported(start_sandbox, require_bubblewrap):
    session = await start_sandbox(policy=SandboxPolicy(memory_mb=300, max_processes=20))

    limits = session.limits

    assert limits["memory_mb_per_process"] == 300 and limits["processes"] == 20
    assert limits["network"] == "none" and limits["sandbox_disk_mb"] == SandboxPolicy().disk_mb
    reason = cgroups.unavailable_reason()
    if reason is None:  # a host that delegates cgroup v2 to the worker
        assert limits["cgroup"] == {"memory_mb": 1024, "pids": 22, "cpu_cores": 1.0}
    else:  # rlimits alone, and why
        assert limits["cgroup"] is None and limits["cgroup_unavailable"] == reason


async def test_a_catastrophic_pattern_cannot_freeze_the_worker(start_sandbox):
    session = await start_sandbox()
    await session.list_tools()
    ticks = 0

    async def heartbeat():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    before = ticks
    refused = await session.call_tool("match", {"text": "a" * 30 + "!"})
    during = ticks - before
    beating.cancel()

    assert refused["ok"] is False and "the call was refused" in refused["error"]
    assert during >= 5  # the loop kept turning while the check ran in its own process
    assert (await session.call_tool("match", {"text": "aaa"}))["ok"] is True
    assert (await session.call_tool("add", {"a": "two", "b": 1}))["error"] == (
        "invalid arguments for add: a: 'two' is not of type 'integer'")
    assert ARGUMENT_CHECKS.timeout == 2.0


async def test_npx_without_network_fails_at_once_saying_why(start_sandbox, require_bubblewrap):
    started = time.monotonic()
    with pytest.raises(SandboxStartFailed, match="no network access .*network: false") as failed:
        await start_sandbox("npx -y @berth-test/never-published@1.0.0", files=())

    assert "ENOTCACHED" in str(failed.value)
    assert time.monotonic() - started < 60  # it failed on its own, not at the 60 s start timeout


async def test_a_start_failure_reports_how_the_sandbox_was_confined(tmp_path, require_bubblewrap):
    ctx, events = _job(tmp_path, "python -c 'import sys; sys.exit(\"no server here\")'")

    with pytest.raises(ExecutorError, match="did not start: .*no server here"):
        await run_server(ctx)

    [(_, status, message, data)] = [event for event in events if event[0] == "sandbox"]
    assert status == "error" and "no server here" in message
    assert data["state"] == "failed" and data["isolation"] == "bubblewrap"
    assert data["limits"]["sandbox_disk_mb"] == SandboxPolicy().disk_mb
