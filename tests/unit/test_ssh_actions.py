"""`ssh.run` on the worker against a real asyncssh server on loopback: refusals before connecting,
injection attempts that arrive as literal values, pinned host keys, exit codes, the timeout, the
output cap and a cancel mid-run."""

import asyncio
import hashlib
import logging
import socket

import pytest

from app.contract.ssh.actions import SshAction, render
from app.contract.ssh.jobs import SshFailure, SshOutcome, SshRunResult
from tests.support.ssh_jobs import SshJob, recorded_job, run_payload
from tests.support.ssh_server import SshTestServer
from workers.config import configure_logging
from workers.executors.base import ExecutorError
from workers.executors.registry import ExecutorRegistry
from workers.executors.ssh import run_action

pytestmark = pytest.mark.anyio

SAFETY_TIMEOUT = 20  # seconds; a bound on waiting, never an assertion about speed

# One action with a parameter of each type, echoing them back: printf repeats its format per value.
ECHO = {"command": ["printf", "%s|", "{text}", "{choice}", "{number}"], "parameters": {
    "text": {"type": "string", "pattern": r"[\s\S]*", "max_length": 200, "allow_leading_dash": True},
    "choice": {"type": "enum", "values": ["; rm -f canary", "$(rm -f canary)", "`rm -f canary`", "*", "plain"]},
    "number": {"type": "integer", "minimum": -10, "maximum": 10, "allow_leading_dash": True},
}}
STRING_INJECTIONS = ["; rm -f canary", "$(rm -f canary)", "`rm -f canary`", "x\nrm -f canary", "' ; rm -f canary '",
                     '" ; rm -f canary "', "*", "~", "$HOME", "a=b", "\\", "x && rm -f canary || y", "| rm -f canary",
                     "> canary", "%s%n", "-rf", "--help", "é€😀\t", ""]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server(tmp_path):
    async with SshTestServer(tmp_path / "host") as running:
        (running.root / "canary").write_text("still here")
        yield running


async def run(payload: SshJob) -> tuple[dict, list]:
    job = recorded_job("ssh.run", payload)
    async with asyncio.timeout(SAFETY_TIMEOUT):
        return await run_action(job.ctx), job.events


async def refused(payload: SshJob) -> dict:
    """The failure report of a job that must fail before its command starts."""
    job = recorded_job("ssh.run", payload)
    async with asyncio.timeout(SAFETY_TIMEOUT):
        with pytest.raises(ExecutorError) as failed:
            await run_action(job.ctx)
    report = job.data("ssh", "error")
    assert report["message"] == str(failed.value)
    return report


# --- refused before anything connects -------------------------------------------------------------


@pytest.mark.parametrize(("parameters", "problem"), [
    ({"text": "x", "choice": "; rm -f canary; echo", "number": 1}, "choice: must be one of"),
    ({"text": "x", "choice": "plain", "number": 11}, "number: must be between -10 and 10"),
    ({"text": "x", "choice": "plain", "number": "1; rm -f canary"}, "number: must be an integer"),
    ({"text": "x" * 201, "choice": "plain", "number": 1}, "text: must be at most 200 characters"),
    ({"text": "a\0b", "choice": "plain", "number": 1}, "text: must not contain NUL characters"),
    ({"choice": "plain", "number": 1}, "text: is required"),
    ({"text": "x", "choice": "plain", "number": 1, "shell": "sh"}, "shell: not a parameter of this action"),
])
async def test_refused_parameters_fail_before_anything_connects(server, parameters, problem):
    report = await refused(run_payload(server, ECHO, parameters))

    assert report["failure"] == SshFailure.invalid_request.value
    assert problem in report["message"]
    assert server.connections == 0


async def test_a_value_read_as_an_option_is_refused_before_connecting(server):
    touch = {"command": ["touch", "{name}"], "parameters": {"name": {"type": "string", "pattern": ".*"}}}

    report = await refused(run_payload(server, touch, {"name": "--reference=/etc/shadow"}))

    assert "name: must not begin with '-' here" in report["message"]
    assert server.connections == 0


async def test_an_action_that_may_not_run_on_the_host_fails_before_connecting(server):
    report = await refused(run_payload(server, {**ECHO, "hosts": ["other-host"]}, {"text": "x", "choice": "plain",
                                                                                    "number": 1}))

    assert report["failure"] == SshFailure.not_allowed.value
    assert SshFailure(report["failure"]).outcome is SshOutcome.denied
    assert server.connections == 0


# --- injection attempts arrive as literal values --------------------------------------------------


@pytest.mark.parametrize("value", STRING_INJECTIONS)
async def test_an_injection_attempt_in_a_string_reaches_the_host_as_one_literal_argument(server, value):
    result, _ = await run(run_payload(server, ECHO, {"text": value, "choice": "plain", "number": -3}))

    assert result["stdout"] == f"{value}|plain|-3|"
    assert result["ended"] == "exited" and result["exit_status"] == 0
    assert (server.root / "canary").read_text() == "still here"
    assert sorted(p.name for p in server.root.iterdir()) == ["canary"]  # nothing created either
    action = SshAction.model_validate({"name": "test-action", "hosts": ["test-host"], **ECHO})
    assert server.commands[-1].command == render(action, {"text": value, "choice": "plain", "number": -3}).command


@pytest.mark.parametrize("choice", ["; rm -f canary", "$(rm -f canary)", "`rm -f canary`", "*"])
async def test_enum_values_with_shell_syntax_are_literal_too(server, choice):
    result, _ = await run(run_payload(server, ECHO, {"text": "t", "choice": choice, "number": "7"}))

    assert result["stdout"] == f"t|{choice}|7|"
    assert (server.root / "canary").exists()


async def test_a_double_dash_in_the_template_makes_a_dash_value_an_operand(server):
    touch = {"command": ["touch", "--", "{name}"], "parameters": {"name": {"type": "string", "pattern": ".*"}}}

    result, _ = await run(run_payload(server, touch, {"name": "-rf"}))

    assert result["exit_status"] == 0
    assert (server.root / "-rf").is_file()


async def test_a_secret_value_reaches_the_host_but_no_result_or_event(server):
    keep = {"command": ["sh", "-c", 'printf %s "$1" > received', "sh", "{password}"],
            "parameters": {"password": {"type": "string", "pattern": ".+", "secret": True}}}

    result, events = await run(run_payload(server, keep, {"password": "hunter2; rm -f canary"}))

    assert (server.root / "received").read_text() == "hunter2; rm -f canary"
    assert result["parameters"] == {"password": "[redacted]"} and result["command"].endswith(" 'sh' [redacted]")
    assert "hunter2" not in str(result) and "hunter2" not in str(events)
    assert (server.root / "canary").exists()


# --- connecting: pinned host keys, client keys -----------------------------------------------------


@pytest.mark.parametrize("pin", ["known_hosts_line", "fingerprint"])
async def test_a_host_key_mismatch_fails_closed_before_the_client_key_is_offered(server, pin):
    wrong = getattr(server, f"wrong_{pin}")

    report = await refused(run_payload(server, ECHO, {"text": "x", "choice": "plain", "number": 1}, host_key=wrong))

    assert report["failure"] == SshFailure.host_key_mismatch.value
    assert server.fingerprint in report["message"] and server.wrong_fingerprint in report["message"]
    assert server.connections == 1 and server.authenticated == 0 and server.commands == []


async def test_a_host_pinned_by_fingerprint_alone_is_accepted_when_it_matches(server):
    result, _ = await run(run_payload(server, ECHO, {"text": "x", "choice": "plain", "number": 1},
                                      host_key=server.fingerprint))

    assert result["stdout"] == "x|plain|1|"


async def test_a_client_key_the_host_does_not_accept_is_an_authentication_failure(server):
    report = await refused(run_payload(server, ECHO, {"text": "x", "choice": "plain", "number": 1},
                                       client_private_key=server.stranger_private_key))

    assert report["failure"] == SshFailure.auth_failed.value
    assert "refused the client key for user operator" in report["message"]
    assert server.authenticated == 0 and server.commands == []


async def test_a_host_nobody_listens_on_is_unreachable(server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    report = await refused(run_payload(server, ECHO, {"text": "x", "choice": "plain", "number": 1}, port=closed_port))

    assert report["failure"] == SshFailure.unreachable.value
    assert f"127.0.0.1:{closed_port}" in report["message"]


async def test_an_unreadable_client_key_is_refused_without_connecting(server):
    payload = run_payload(server, ECHO, {"text": "x", "choice": "plain", "number": 1})
    payload.secrets["client_private_key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "x" * 80 + "\n-----END OPENSSH"

    report = await refused(payload)

    assert report["failure"] == SshFailure.invalid_request.value and "x" * 80 not in report["message"]
    assert server.connections == 0


async def test_a_job_without_its_sealed_client_key_is_refused_without_connecting(server):
    job = run_payload(server, ECHO, {"text": "x", "choice": "plain", "number": 1})
    job.secrets.clear()  # as a worker sees a job whose secrets were never sealed for it

    report = await refused(job)

    assert report["failure"] == SshFailure.invalid_request.value
    assert "secrets: client_private_key" in report["message"] and server.connections == 0


# --- how commands end ------------------------------------------------------------------------------


async def test_a_non_zero_exit_completes_with_its_status_output_and_digests(server):
    failing = {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}

    result, events = await run(run_payload(server, failing))

    parsed = SshRunResult.model_validate(result)
    assert (parsed.ended, parsed.exit_status, parsed.outcome) == ("exited", 3, SshOutcome.failed)
    assert (parsed.stdout, parsed.stderr) == ("out\n", "err\n")
    assert parsed.stdout_sha256 == hashlib.sha256(b"out\n").hexdigest()
    assert parsed.stderr_sha256 == hashlib.sha256(b"err\n").hexdigest()
    assert parsed.command == "exec 'sh' '-c' 'echo out; echo err >&2; exit 3'"
    assert 0 < parsed.connect_ms <= parsed.duration_ms
    assert [(step, status) for step, status, _, _ in events] == [("ssh", "running")]


async def test_the_action_timeout_stops_the_remote_command(server):
    sleeper = {"command": ["sleep", "30"], "timeout_seconds": 1}

    result, _ = await run(run_payload(server, sleeper))

    assert result["ended"] == "timeout" and result["exit_status"] is None
    record = server.commands[-1]
    async with asyncio.timeout(SAFETY_TIMEOUT):
        await record.finished.wait()
    assert record.signals == ["TERM"] and record.returncode < 0


async def test_output_past_the_cap_is_counted_and_hashed_but_not_kept(server):
    chatty = {"command": ["sh", "-c", "yes berth | head -c 100000; printf e >&2"], "output_cap_bytes": 1024}

    result, _ = await run(run_payload(server, chatty))

    full = (b"berth\n" * 20000)[:100000]
    assert result["stdout"] == full[:1024].decode() and result["stdout_truncated"] is True
    assert result["stdout_bytes"] == 100000 and result["stdout_sha256"] == hashlib.sha256(full).hexdigest()
    assert (result["stderr"], result["stderr_truncated"]) == ("e", False)


async def test_a_cancel_mid_run_stops_the_remote_command_and_ends_the_job_promptly(server):
    job = recorded_job("ssh.run", run_payload(server, {"command": ["sleep", "60"], "timeout_seconds": 300}))
    running = asyncio.ensure_future(run_action(job.ctx))
    async with asyncio.timeout(SAFETY_TIMEOUT):
        while not server.commands:
            await asyncio.sleep(0.02)
        job.ctx.cancelled.set()  # what the worker does when the lease ends and the API cancels the job
        await running
        record = server.commands[-1]
        await record.finished.wait()

    assert record.signals == ["TERM"] and record.returncode < 0
    summary = job.data("ssh", "cancelled")
    assert summary["ended"] == "cancelled" and "stdout" not in summary
    assert summary["stdout_sha256"] == hashlib.sha256(b"").hexdigest()


def test_the_worker_advertises_the_ssh_jobs_and_answers_forward_proxies():
    loaded = ExecutorRegistry.load()

    assert loaded.executors["ssh.run"] is run_action and "ssh.forward" in loaded.executors
    assert loaded.control_handler("ssh.proxy") is not None
    assert loaded.control_handler("proxy") is not loaded.control_handler("ssh.proxy")


async def test_a_secret_value_stays_out_of_the_workers_logs_even_at_debug(server, capsys):
    keep = {"command": ["sh", "-c", 'printf %s "$1" > received', "sh", "{password}"],
            "parameters": {"password": {"type": "string", "pattern": ".+", "secret": True}}}
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    configure_logging("DEBUG")  # as `berth worker --log-level debug` does
    try:
        await run(run_payload(server, keep, {"password": "hunter2"}))
    finally:
        root.handlers, root.level = handlers, level

    assert (server.root / "received").read_text() == "hunter2"
    assert "hunter2" not in capsys.readouterr().err
