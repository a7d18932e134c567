"""The `berth` CLI as a user runs it (its own process, its own config directory) against the
real local stack, real workers, the local model hub and a real MCP server in a sandbox.

Every run checks that no stored key shows in what the command printed (`BerthCli`)."""

import importlib.metadata
import json
import socket
import stat
import subprocess
import time

import httpx
import pytest

from app.local.stack import free_port
from tests.e2e.conftest import FAST_SETTINGS
from tests.support.hub import DEMO_LLAMA
from tests.support.sandbox_fixtures import ECHO_SERVER

pytestmark = pytest.mark.e2e

WINDOW_SECONDS = float(FAST_SETTINGS["BERTH_SSE_WINDOW_SECONDS"])
ECHO = f"python3 {ECHO_SERVER}"


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done


def as_json(done: subprocess.CompletedProcess):
    return json.loads(ok(done).stdout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cli_keys(account) -> list[dict]:
    return [key for key in account.get("/api/auth/keys").json()["keys"] if key["name"].startswith("cli@")]


def test_berth_version_and_the_worker_help_its_own_parser_gives(berth):
    assert ok(berth("--version")).stdout.strip() == f"berth {importlib.metadata.version('berth')}"
    assert "--join-token" in ok(berth("worker", "--help")).stdout


def test_login_with_a_password_mints_a_key_for_the_cli_and_stores_it_privately(logged_in, account):
    profile = logged_in.profiles()["default"]
    assert profile["api_url"] == logged_in.api_url and profile["tier"] == "standard"
    assert profile["api_key"].startswith("bak_") and profile["key_id"].startswith("key_")
    assert stat.S_IMODE((logged_in.config_dir / "profiles.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(logged_in.config_dir.stat().st_mode) == 0o700
    [minted] = cli_keys(account)
    assert minted["id"] == profile["key_id"] and minted["name"] == f"cli@{socket.gethostname()}"
    assert minted["tier"] == "standard" and minted["revoked_at"] is None
    assert profile["api_key"].startswith(minted["prefix"])

    whoami = ok(logged_in("whoami")).stdout
    email = account.get("/v1/auth/me").json()["user"]["email"]
    assert email in whoami and "an API key" in whoami and "profile 'default'" in whoami
    me = httpx.get(f"{logged_in.api_url}/v1/auth/me", headers={"X-API-Key": profile["api_key"]}).json()
    assert as_json(logged_in("whoami", "--json")) == me and me["auth"] == "api_key"


def test_logging_in_again_to_a_profile_revokes_the_key_it_replaces(logged_in, account):
    replaced = logged_in.profiles()["default"]["key_id"]
    email = account.get("/v1/auth/me").json()["user"]["email"]
    ok(logged_in("login", "--api", logged_in.api_url, "--email", email, "--password-stdin", stdin="correct-horse\n"))
    current = logged_in.profiles()["default"]["key_id"]
    revoked = {key["id"]: key["revoked_at"] is not None for key in cli_keys(account)}
    assert current != replaced and revoked == {replaced: True, current: False}


def test_logout_revokes_the_key_login_minted_and_forgets_the_profile(logged_in, account):
    key = logged_in.profiles()["default"]["api_key"]
    done = ok(logged_in("logout", "--password-stdin", stdin="correct-horse\n"))
    assert "Revoked API key" in done.stdout
    assert logged_in.profiles() == {}
    [revoked] = cli_keys(account)
    assert revoked["revoked_at"] is not None
    assert httpx.get(f"{logged_in.api_url}/v1/auth/me", headers={"X-API-Key": key}).status_code == 401
    not_logged_in = logged_in("whoami")
    assert not_logged_in.returncode == 3 and "not logged in" in not_logged_in.stderr


def test_a_wrong_password_saves_nothing_and_says_why(berth, account):
    email = account.get("/v1/auth/me").json()["user"]["email"]
    done = berth("login", "--api", berth.api_url, "--email", email, "--password-stdin", stdin="wrong-horse\n")
    assert done.returncode == 1 and "wrong email or password" in done.stderr and "HTTP 401" in done.stderr
    assert berth.profiles() == {} and cli_keys(account) == []


def test_a_key_you_have_named_profiles_and_the_environment(berth, account):
    key = account.post("/api/auth/keys/generate", json={"name": "ci", "tier": "admin"}).json()["key"]
    ok(berth("login", "--api", berth.api_url, "--key", "-", "--profile", "ci", stdin=key + "\n"))
    saved = berth.profiles()["ci"]
    assert saved["api_key"] == key and "key_id" not in saved  # not minted here: logout will not revoke it
    assert "profile 'ci'" in ok(berth("whoami", "--profile", "ci")).stdout
    assert ok(berth("whoami", env={"BERTH_PROFILE": "ci"})).returncode == 0

    refused = berth("login", "--api", berth.api_url, "--key", "bak_not-a-real-key", "--profile", "bad")
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "bad" not in berth.profiles()

    assert "Forgot profile 'ci'" in ok(berth("logout", "--profile", "ci")).stdout
    assert berth.profiles() == {}
    from_environment = berth("whoami", "--json", env={"BERTH_API_URL": berth.api_url, "BERTH_API_KEY": key})
    assert as_json(from_environment)["auth"] == "api_key"  # the key still works, and no file is needed


def test_jobs_list_get_and_cancel_with_paging_filters_and_the_apis_json(logged_in, account):
    jobs = [account.create_job("agent.run", {"agent": f"a{n}"}) for n in range(3)]  # no runtime runs agent.run

    listed = as_json(logged_in("jobs", "list", "--json"))
    assert listed == account.get("/v1/jobs", params={"limit": 20}).json()
    assert [job["job_id"] for job in listed["jobs"]] == jobs[::-1]
    table = ok(logged_in("jobs", "list"))
    assert all(job_id in table.stdout for job_id in jobs) and "queued" in table.stdout

    first = ok(logged_in("jobs", "list", "--limit", "2"))
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    assert jobs[0] not in first.stdout
    rest = as_json(logged_in("jobs", "list", "--limit", "2", "--cursor", cursor, "--json"))
    assert [job["job_id"] for job in rest["jobs"]] == [jobs[0]]
    every = as_json(logged_in("jobs", "list", "--limit", "2", "--all", "--json"))
    assert [job["job_id"] for job in every["jobs"]] == jobs[::-1] and every["next_cursor"] is None

    assert as_json(logged_in("jobs", "get", jobs[1], "--json")) == account.job(jobs[1])
    shown = ok(logged_in("jobs", "get", jobs[1])).stdout
    assert jobs[1] in shown and "agent.run" in shown and '"agent": "a1"' in shown

    assert "cancelled" in ok(logged_in("jobs", "cancel", jobs[1])).stdout
    assert account.job(jobs[1])["status"] == "cancelled"
    assert as_json(logged_in("jobs", "cancel", jobs[1], "--json")) == {"success": True, "ok": True, "status": "cancelled"}
    cancelled = as_json(logged_in("jobs", "list", "--status", "cancelled", "--type", "agent.run", "--json"))
    assert [job["job_id"] for job in cancelled["jobs"]] == [jobs[1]]


def test_follow_streams_a_real_job_live_across_stream_windows_and_an_api_restart(logged_in, account, workers,
                                                                                  stack):
    job_id = account.create_job(payload={"model": DEMO_LLAMA})  # no runtime yet: it waits, queued
    started = time.monotonic()
    following = logged_in.start("jobs", "follow", job_id, "--json")
    time.sleep(WINDOW_SECONDS + 1)  # the first stream has ended at its window by now
    stack.stop_api()  # and the next connections fail until it is back
    time.sleep(1)
    stack.start_api()
    workers(account.join_token())
    stdout, stderr = following.communicate(timeout=120)
    assert following.returncode == 0, stderr
    assert time.monotonic() - started > 2 * WINDOW_SECONDS  # so it resumed at least once

    events = json_lines(stdout)
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))  # no gap, no repeat
    assert events == account.events(job_id)  # exactly the API's events
    assert [e["status"] for e in events if e["step"] == "job"] == ["queued", "start", "complete"]
    logged_in.assert_no_key_shown(stdout + stderr)

    rendered = ok(logged_in("jobs", "follow", job_id))
    lines = rendered.stdout.splitlines()
    assert len(lines) == len(events)
    for line, event in zip(lines, events, strict=True):
        assert f" {event['seq']}  {event['step']}" in line and event["status"] in line
        assert event["message"] in line
    assert f"job {job_id} complete" in rendered.stderr
    resumed = json_lines(ok(logged_in("jobs", "follow", job_id, "--after", "2", "--json")).stdout)
    assert resumed == events[2:]


def test_the_exit_code_of_follow_says_how_the_job_ended(logged_in, account, workers):
    workers(account.join_token())
    failing = account.create_job(payload={"model": "berth-demo/no-such-model"})
    done = logged_in("jobs", "follow", failing)
    assert done.returncode == 5 and f"job {failing} error" in done.stderr
    assert account.job(failing)["error"] in done.stderr

    cancelled = account.create_job("agent.run", {"agent": "nobody-runs-this"})
    ok(logged_in("jobs", "cancel", cancelled))
    assert logged_in("jobs", "follow", cancelled).returncode == 6

    expiring = account.create_job("agent.run", {"agent": "nobody-runs-this"}, ttl_seconds=1)
    expired = logged_in("jobs", "follow", expiring, "--json")
    assert expired.returncode == 7 and json_lines(expired.stdout)[-1]["status"] == "expired"


def test_sandboxes_create_wait_tools_call_and_delete_on_a_real_mcp_server(logged_in, account, workers):
    workers(account.join_token(), "--sandbox-tool-dir", str(ECHO_SERVER.parent))
    created = as_json(logged_in("sandboxes", "create", "--command", ECHO, "--env", "GREETING=hello", "--ttl", "300",
                                "--runtime", "python", "--transport", "stdio", "--wait", "--json"))
    session_id = created["session_id"]
    assert created["state"] == "running" and created["env"] == ["GREETING"] and created["runtime"] == "python"
    assert created == account.get(f"/v1/sandbox/sessions/{session_id}").json()

    listed = as_json(logged_in("sandboxes", "tools", session_id, "--json"))
    assert listed == account.get(f"/v1/sandbox/sessions/{session_id}/tools").json()
    assert {"echo", "add", "fail"} <= {tool["name"] for tool in listed["tools"]}
    assert "a*: integer, b*: integer" in ok(logged_in("sandboxes", "tools", session_id)).stdout

    assert ok(logged_in("sandboxes", "call", session_id, "add", "--arg", "a=2", "--arg", "b=3")).stdout == "5\n"
    echoed = logged_in("sandboxes", "call", session_id, "echo", "--args-json", '{"text": "über [b]x[/b]"}')
    assert ok(echoed).stdout == "über [b]x[/b]\n"
    called = as_json(logged_in("sandboxes", "call", session_id, "add", "--args-json", '{"a": 1}', "--arg", "b=41",
                               "--json"))
    assert called["ok"] is True and called["result"]["structuredContent"] == {"result": 42}
    failed = logged_in("sandboxes", "call", session_id, "fail")
    assert failed.returncode == 8 and "this tool always fails" in failed.stderr
    wrong_type = logged_in("sandboxes", "call", session_id, "echo", "--arg", "text=5")  # 5 is JSON: a number
    assert wrong_type.returncode == 8 and "is not of type 'string'" in wrong_type.stderr

    page = as_json(logged_in("sandboxes", "list", "--json"))
    assert [s["session_id"] for s in page["sandboxes"]] == [session_id]
    shown = ok(logged_in("sandboxes", "get", session_id)).stdout
    assert "running" in shown and "GREETING" in shown and "hello" not in shown  # names only, never values

    assert "cancelled" in ok(logged_in("sandboxes", "delete", session_id)).stdout
    gone = logged_in("sandboxes", "tools", session_id)
    assert gone.returncode == 1 and "not running" in gone.stderr and "HTTP 409" in gone.stderr


def test_a_server_that_cannot_start_ends_the_wait_with_its_reason(logged_in, account, workers):
    workers(account.join_token())
    done = logged_in("sandboxes", "create", "--command", "python3 -c 'import sys; sys.exit(3)'", "--runtime",
                     "python", "--wait", "--wait-timeout", "60")
    assert done.returncode == 9 and "failed" in done.stderr


def test_an_api_error_is_berths_message_with_its_status_and_request_id(logged_in, account):
    answer = account.get("/v1/jobs/job_missing").json()
    for args in (("jobs", "get", "job_missing"), ("jobs", "get", "job_missing", "--json")):
        done = logged_in(*args)
        assert done.returncode == 1 and done.stdout == ""
        assert answer["error"] in done.stderr and "HTTP 404" in done.stderr and "request req_" in done.stderr
    refused = logged_in("sandboxes", "create", "--command", "sudo ls")
    assert refused.returncode == 1 and "refused by policy" in refused.stderr and "HTTP 403" in refused.stderr
    unknown_key = logged_in("jobs", "list", env={"BERTH_API_KEY": "bak_not-a-real-key"})
    assert unknown_key.returncode == 1 and "HTTP 401" in unknown_key.stderr


def test_an_unreachable_api_names_the_url_it_tried(berth):
    url = f"http://127.0.0.1:{free_port()}"
    done = berth("jobs", "list", env={"BERTH_API_URL": url, "BERTH_API_KEY": "bak_anything"})
    assert done.returncode == 4 and f"could not reach the berth API at {url}" in done.stderr
    nothing = berth("jobs", "list")
    assert nothing.returncode == 3 and "berth login" in nothing.stderr


def test_the_minted_key_is_shown_only_when_asked_and_then_once(berth, account):
    email = account.get("/v1/auth/me").json()["user"]["email"]
    done = berth("login", "--api", berth.api_url, "--email", email, "--password-stdin", "--show-key", "--json",
                 stdin="correct-horse\n")
    shown = as_json(done)
    assert shown["key"] == berth.profiles()["default"]["api_key"]
    assert shown["api_key"]["id"] == berth.profiles()["default"]["key_id"] and "key" not in shown["api_key"]
