"""The sandbox runtime against real MCP servers: our echo server and one published on npm."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.contract.policy import SandboxPolicy, SandboxRejected, placement_refusal
from tests.support.sandbox_fixtures import (  # noqa: F401 (fixtures)
    ECHO_SERVER,
    EVERYTHING_ENTRY,
    anyio_backend,
    call_directly,
    everything_server,
    python_command,
    require_bubblewrap,
    running,
    start_sandbox,
)
from workers.sandbox.isolation import claim_sandbox_uid, release_sandbox_uid
from workers.sandbox.session import SandboxStartFailed
from workers.sandbox.stderr import OFFLINE_ENVIRONMENT

pytestmark = pytest.mark.anyio

SAFETY_TIMEOUT = 20  # seconds; a bound on waiting, never an assertion about speed


async def wait_until(condition) -> None:
    async with asyncio.timeout(SAFETY_TIMEOUT):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("", "empty"),
        ("python 'unclosed", "cannot be parsed"),
        ("ls -la /", "'ls' is not allowed"),
        ("curl http://example.com", "'curl', which the sandbox policy denies"),
        ("/tmp/evil/python server.py", "by name, not by path"),
        ("bash -c 'sudo id'", "'sudo'"),
    ],
)
def test_policy_rejects_commands_it_does_not_allow(command, reason):
    with pytest.raises(SandboxRejected, match=reason):
        SandboxPolicy().check_command(command)


@pytest.mark.parametrize(("labels", "own_runtime", "network", "refused"), [
    ({"sandbox": "bubblewrap", "sandbox_network": "pasta"}, False, True, None),
    ({"sandbox": "bubblewrap", "sandbox_network": "none"}, False, False, None),
    ({"sandbox": "bubblewrap", "sandbox_network": "none"}, True, True, "network namespace of its own"),
    ({"sandbox": "bubblewrap"}, False, True, "network namespace of its own"),  # a worker from before
    ({"sandbox": "rlimits", "sandbox_network": "none"}, True, False, None),
    ({"sandbox": "rlimits", "sandbox_network": "none"}, False, False, "runs only its own workspace's"),
    ({"sandbox": "none", "sandbox_network": "pasta"}, True, False, "runs none"),
    ({}, True, False, "runs none"),
])
def test_only_a_runtime_that_isolates_may_run_a_strangers_sandbox(labels, own_runtime, network, refused):
    reason = placement_refusal(labels, own_runtime=own_runtime, network=network)

    assert reason is None if refused is None else refused in reason


def test_policy_accepts_an_allowed_command():
    assert SandboxPolicy().check_command("npx -y '@scope/server' --flag") == ["npx", "-y", "@scope/server", "--flag"]


async def test_tools_and_results_match_a_direct_client(start_sandbox):
    session = await start_sandbox()

    tools = {tool["name"]: tool for tool in await session.list_tools()}

    assert {"echo", "add", "fail", "sleep", "read_file", "net_probe", "fork_bomb", "hog_memory"} <= set(tools)
    assert tools["add"]["input_schema"]["required"] == ["a", "b"]
    assert tools["echo"]["description"] == "Return the text unchanged."
    calls = [("echo", {"text": "héllo"}), ("add", {"a": 2, "b": 40})]
    direct = await call_directly(python_command(ECHO_SERVER), calls)
    sandboxed = [await session.call_tool(tool, arguments) for tool, arguments in calls]
    assert sandboxed == [{"ok": True, "result": result} for result in direct]
    assert (await session.call_tool("add", {"a": 2, "b": 40}))["result"]["structuredContent"] == {"result": 42}


async def test_failures_are_results_not_exceptions(start_sandbox):
    session = await start_sandbox()

    tool_error = await session.call_tool("fail", {})
    unknown = await session.call_tool("no_such_tool", {})
    invalid = await session.call_tool("add", {"a": "two", "b": 1})
    too_slow = await session.call_tool("sleep", {"seconds": 30}, timeout=0.5)

    assert tool_error["ok"] is False and "this tool always fails" in tool_error["error"]
    assert tool_error["result"]["isError"] is True
    assert unknown["ok"] is False and "Unknown tool: no_such_tool" in unknown["error"]
    assert invalid == {"ok": False, "error": "invalid arguments for add: a: 'two' is not of type 'integer'"}
    assert too_slow["ok"] is False and "timed out" in too_slow["error"]
    assert (await session.call_tool("echo", {"text": "still here"}))["ok"] is True


async def test_a_server_that_cannot_start_reports_its_stderr(start_sandbox):
    with pytest.raises(SandboxStartFailed, match="exited during start: .*no such module here"):
        await start_sandbox("python -c 'import sys; sys.exit(\"no such module here\")'")


async def test_a_crashed_server_marks_the_session_dead(start_sandbox):
    session = await start_sandbox()
    server = session.processes()[-1]  # the deepest process: the server, below bwrap and its init

    os.kill(server, 9)
    result = await session.call_tool("echo", {"text": "anyone?"})
    await wait_until(lambda: not session.alive)

    assert result["ok"] is False and "sandbox server exited" in result["error"]
    assert session.stop_reason.startswith("server exited")


async def test_ttl_expiry_stops_the_session(start_sandbox):
    session = await start_sandbox(policy=SandboxPolicy(ttl_seconds=1))
    processes = session.processes()

    await wait_until(lambda: not session.alive)

    assert session.stop_reason == "ttl of 1s expired"
    await wait_until(lambda: not any(running(pid) for pid in processes))
    assert (await session.call_tool("echo", {"text": "late"})) == {
        "ok": False, "error": "sandbox is not running: ttl of 1s expired"}


async def test_stop_kills_the_whole_tree(start_sandbox):
    session = await start_sandbox()
    processes = session.processes()
    assert len(processes) >= 2 and all(running(pid) for pid in processes)
    assert session.rss_bytes() > 0

    await session.stop()

    assert not session.alive and session.stop_reason == "stopped"
    assert [pid for pid in processes if running(pid)] == []


async def test_http_transport(start_sandbox):
    session = await start_sandbox(policy=SandboxPolicy(network=True), transport="http")

    assert (await session.call_tool("add", {"a": 1, "b": 2}))["result"]["structuredContent"] == {"result": 3}


async def test_http_transport_needs_network(start_sandbox):
    with pytest.raises(SandboxRejected, match="needs a policy with network access"):
        await start_sandbox(transport="http")


async def test_published_npm_server_matches_a_direct_client(start_sandbox, everything_server, require_bubblewrap):
    session = await start_sandbox(
        f"node {EVERYTHING_ENTRY} stdio", files=(everything_server,), env={"GREETING": "hi"}
    )

    tools = {tool["name"] for tool in await session.list_tools()}
    arguments = {"a": 2, "b": 3}
    [direct] = await call_directly(["node", str(everything_server.parent / EVERYTHING_ENTRY), "stdio"],
                                   [("get-sum", arguments)])
    environment = await session.call_tool("get-env", {})

    assert {"echo", "get-sum", "get-env"} <= tools
    assert session.isolation == "bubblewrap"
    assert await session.call_tool("get-sum", arguments) == {"ok": True, "result": direct}
    # Only what the sandbox was given, plus PATH, HOME, LANG and (having no network) the package
    # managers' offline switches: nothing of the worker's.
    assert set(json.loads(environment["result"]["content"][0]["text"])) == {
        "GREETING", "PATH", "HOME", "LANG", *OFFLINE_ENVIRONMENT}


async def test_cannot_read_the_worker_data_dir(start_sandbox, tmp_path, require_bubblewrap):
    data_dir = tmp_path / "worker-data"
    data_dir.mkdir()
    token = data_dir / "runtime-token"
    token.write_text("secret-runtime-token")
    token.chmod(0o600)
    session = await start_sandbox()

    stolen = await session.call_tool("read_file", {"path": str(token)})
    own_file = await session.call_tool("read_file", {"path": "echo_server.py"})

    assert session.isolation == "bubblewrap"
    assert stolen["ok"] is False and "secret" not in str(stolen)
    assert own_file["ok"] is True


async def test_cannot_read_another_sandboxs_workdir(start_sandbox, require_bubblewrap):
    first, second = await asyncio.gather(start_sandbox(name="first"), start_sandbox(name="second"))
    neighbours_file = Path(second.workdir) / "echo_server.py"

    neighbour = await first.call_tool("read_file", {"path": str(neighbours_file)})

    assert neighbour["ok"] is False and "No such file" in neighbour["error"]
    assert (await second.call_tool("read_file", {"path": "echo_server.py"}))["ok"] is True


async def test_without_network_access_nothing_is_reachable(start_sandbox, require_bubblewrap):
    listener = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        offline = await start_sandbox(name="offline")

        blocked = await offline.call_tool("net_probe", {"host": "127.0.0.1", "port": port})

    assert blocked["ok"] is False and "cannot connect" in blocked["error"]
    # What a networked sandbox reaches, and what not: test_sandbox_network.py.


async def test_a_fork_bomb_is_contained(start_sandbox, require_bubblewrap):
    policy = SandboxPolicy(max_processes=16)
    session = await start_sandbox(policy=policy)

    bomb = await session.call_tool("fork_bomb", {"seconds": 10}, timeout=30)
    processes = session.processes()

    assert bomb["ok"] is True and "process limit reached" in bomb["result"]["content"][0]["text"]
    assert len(processes) <= policy.max_processes + 2  # plus bwrap and its init
    assert subprocess.run(["true"]).returncode == 0  # the worker can still start processes
    await session.stop()
    assert [pid for pid in processes if running(pid)] == []


async def test_a_memory_hog_is_contained(start_sandbox, require_bubblewrap):
    session = await start_sandbox(policy=SandboxPolicy(memory_mb=256))

    hog = await session.call_tool("hog_memory", {"mb": 1024})
    modest = await session.call_tool("hog_memory", {"mb": 32})

    assert hog["ok"] is False and "out of memory" in hog["error"]
    assert modest["ok"] is True and session.alive


def test_two_processes_never_claim_the_same_sandbox_uid():
    """Stopping a sandbox kills every process of its uid: two workers on one host must not share one."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "from workers.sandbox.isolation import claim_sandbox_uid; import sys; "
         "print(claim_sandbox_uid(), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        theirs = int(holder.stdout.readline())
        ours = claim_sandbox_uid()
        try:
            assert ours != theirs
        finally:
            release_sandbox_uid(ours)
    finally:
        holder.communicate("")
