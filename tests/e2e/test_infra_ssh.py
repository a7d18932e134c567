"""Infra SSH end to end through the local stack: the API under a real approval lease, a real worker
process running `ssh.run` and `ssh.forward`, and a real asyncssh server on loopback with a pinned
host key and a client key (tests.support.ssh_server); the inventory a YAML file the stack reads.

Every refused outcome and `ok` is answered with its kind and audited; injection attempts in every
parameter type arrive as literal values; a host key mismatch fails closed; a lease that ends
mid-run stops the command; a forward carries real HTTP and closes when the lease ends; the same
through `/mcp` with the official MCP client."""

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app import composition
from app.local.stack import LocalStack, StackOptions, free_port
from app.services.ssh_keys import KMS_CONTEXT
from tests.e2e.conftest import FAST_SETTINGS, Account, WorkerProcess, new_account
from tests.support.ssh_server import ThreadedSshServer

pytestmark = pytest.mark.e2e

LEASE = "/api/infra/ssh/admin-session"
PERSON = "ada@ops"
INJECTIONS = ["; rm -f canary", "$(rm -f canary)", "`rm -f canary`", "x\nrm -f canary", "' ; rm -f canary '",
              '" ; rm -f canary "', "*", "~", "$HOME", "a && rm -f canary || b", "| rm -f canary", "> canary",
              "-rf", "--help", "é😀\t"]


def inventory(ssh, key_file: Path, dashboard_port: int, sealed_key: str | None = None) -> str:
    """The inventory: hosts on the test server (one pinned to a key it does not have), actions with a
    parameter of each type, a secret one, and a forward to the dashboard. With `sealed_key` (a kms:
    reference), a host whose client key KMS keeps."""
    pinned, wrong = ssh.known_hosts_line, ssh.wrong_known_hosts_line
    host = f"address: 127.0.0.1\n    port: {ssh.port}\n    user: operator"
    sealed_host = f"""
  - name: sealed-host
    {host}
    host_key: "{pinned}"
    client_key: "{sealed_key}"
""" if sealed_key else ""
    return f"""
hosts:
  - name: test-host
    {host}
    labels: [lab]
    host_key: "{pinned}"
    client_key: "file:{key_file}"
  - name: impostor
    {host}
    labels: [lab]
    host_key: "{wrong}"
    client_key: "file:{key_file}"
  - name: other-host
    {host}
    host_key: "{pinned}"
    client_key: "file:{key_file}"
  - name: far-host
    {host}
    host_key: "{pinned}"
    client_key: "file:{key_file}"
    runtime_labels: {{zone: far}}
{sealed_host}
actions:
  - name: echo
    command: [printf, "%s|", "{{text}}", "{{choice}}", "{{number}}"]
    parameters:
      text: {{type: string, pattern: "[\\\\s\\\\S]*", max_length: 200, allow_leading_dash: true}}
      choice: {{type: enum, values: ["; rm -f canary", "$(rm -f canary)", "`rm -f canary`", "*", plain]}}
      number: {{type: integer, minimum: -10, maximum: 10, allow_leading_dash: true}}
    labels: [lab]
  - name: keep-token
    command: [sh, -c, 'printf %s "$1" > received', sh, "{{token}}"]
    parameters:
      token: {{type: string, pattern: ".+", secret: true}}
    hosts: [test-host]
  - name: fail
    command: [sh, -c, "echo broken >&2; exit 3"]
    hosts: [test-host, far-host{", sealed-host" if sealed_key else ""}]
  - name: wait
    command: [sleep, "{{seconds}}"]
    parameters:
      seconds: {{type: integer, minimum: 1, maximum: 120}}
    hosts: [test-host]
    timeout_seconds: 300
forwards:
  - {{name: dashboard, target_port: {dashboard_port}, hosts: [test-host], max_ttl_seconds: 600}}
"""


class _Dashboard(BaseHTTPRequestHandler):
    """An HTTP service only the SSH host reaches: answers with what it received, and tries what a
    hostile page would (a cookie, a script)."""

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        received = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                               "cookie": self.headers.get("cookie"), "user": self.headers.get("x-user-id")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("set-cookie", "session=stolen; Path=/")
        self.send_header("content-length", str(len(received)))
        self.end_headers()
        self.wfile.write(received)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Ops:
    stack: LocalStack
    ssh: ThreadedSshServer
    owner: Account  # signed in: a person
    key: str  # the owner's admin API key, as an agent holds it
    standard_key: str
    inventory_path: Path
    key_file: Path
    dashboard_port: int
    worker: WorkerProcess
    canary: Path = field(init=False)

    def __post_init__(self) -> None:
        self.canary = self.ssh.server.root / "canary"

    def agent(self, user: str | None = PERSON, key: str | None = None) -> dict:
        return {"X-API-Key": key or self.key, **({"X-User-Id": user} if user else {})}

    def as_agent(self, method: str, path: str, user: str | None = PERSON, key: str | None = None,
                 headers: dict | None = None, **kwargs):
        return self.owner.client.request(method, path, headers={**self.agent(user, key), **(headers or {})}, **kwargs)

    def begin_lease(self, ttl_seconds: int = 600) -> dict:
        """An agent asks, the person approves, signed in."""
        self.owner.delete(LEASE)
        asked = self.as_agent("POST", LEASE, json={"reason": "e2e", "ttl_seconds": ttl_seconds})
        assert asked.status_code == 201, asked.text
        approved = self.owner.post(f"{LEASE}/approve", json={"lease_id": asked.json()["lease"]["lease_id"]})
        assert approved.status_code == 200 and approved.json()["active"], approved.text
        return approved.json()["lease"]

    def run(self, action: str, host: str = "test-host", wait: float = 20, **parameters) -> httpx.Response:
        return self.as_agent("POST", f"/api/infra/ssh/actions/{action}/run",
                             json={"host": host, "parameters": parameters, "wait_seconds": wait})

    def audit(self, action: str = "infra_ssh.run") -> list[dict]:
        events = self.owner.get("/v1/cloud/audit", params={"limit": 200}).json()["events"]
        return [event for event in events if event["action"] == action]

    def wait_run(self, run_id: str, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.as_agent("GET", f"/api/infra/ssh/runs/{run_id}").json()
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, f"run {run_id} stayed {run['status']}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def ops(tmp_path_factory, hub):
    scratch = tmp_path_factory.mktemp("infra-ssh")
    dashboard = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=dashboard.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    with ThreadedSshServer(scratch / "host") as ssh:
        key_file = scratch / "id_ed25519"
        key_file.write_text(ssh.server.client_private_key)
        os.chmod(key_file, 0o600)
        inventory_path = scratch / "inventory.yaml"
        inventory_path.write_text(inventory(ssh.server, key_file, dashboard.server_address[1]))
        options = StackOptions(data_dir=scratch / "stack", port=free_port(), moto_port=free_port(), worker=False,
                               sweep_interval=0.5, snapshot_interval=3600,
                               environment={**FAST_SETTINGS, "BERTH_SSH_INVENTORY": str(inventory_path)})
        stack = LocalStack(options).start()
        client = httpx.Client(base_url=stack.api_url, timeout=60)
        owner = new_account(client)
        keys = {tier: owner.post("/api/auth/keys/generate", json={"name": tier, "tier": tier}).json()["key"]
                for tier in ("admin", "standard")}
        worker = WorkerProcess(stack, hub, scratch / "worker", owner.join_token())
        assert worker.runtime_id  # waits for it to register
        try:
            yield Ops(stack, ssh, owner, keys["admin"], keys["standard"], inventory_path, key_file,
                      dashboard.server_address[1], worker)
        finally:
            worker.stop()
            client.close()
            stack.stop()
            dashboard.shutdown()
            dashboard.server_close()


# --- the outcomes, each audited ---------------------------------------------------------------------


def test_each_refusal_and_ok_is_answered_with_its_kind_and_audited(ops):
    ops.owner.delete(LEASE)
    ops.canary.write_text("here")
    no_lease = ops.run("echo", text="x", choice="plain", number=1)
    ops.begin_lease()
    lower = ops.as_agent("POST", "/api/infra/ssh/actions/echo/run", key=ops.standard_key,
                         json={"host": "test-host", "parameters": {}})
    nobody = ops.as_agent("POST", "/api/infra/ssh/actions/echo/run", user=None,
                          json={"host": "test-host", "parameters": {}})
    unknown = ops.run("reboot")
    elsewhere = ops.run("echo", host="other-host", text="x", choice="plain", number=1)
    invalid = ops.run("echo", text="x", choice="plain", number="1; rm -f canary")
    ran = ops.run("echo", text="hello", choice="plain", number=-3)
    failed = ops.run("fail")

    assert no_lease.status_code == 403 and no_lease.json()["kind"] == "approval_required"
    assert lower.status_code == 403 and lower.json()["kind"] == "denied" and "admin-tier" in lower.json()["error"]
    assert nobody.status_code == 403 and nobody.json()["kind"] == "denied" and "X-User-Id" in nobody.json()["error"]
    assert unknown.status_code == 404 and unknown.json()["kind"] == "denied"
    assert elsewhere.status_code == 403 and elsewhere.json()["kind"] == "denied"
    assert "may not be used on host other-host" in elsewhere.json()["error"]
    assert invalid.status_code == 422 and invalid.json()["kind"] == "validation_failed"
    assert "number: must be an integer" in invalid.json()["error"] and "rm -f" not in invalid.json()["error"]
    assert ran.status_code == 200, ran.text
    run = ran.json()
    assert run["outcome"] == "ok" and run["exit_status"] == 0 and run["stdout"] == "hello|plain|-3|"
    assert run["requested"] == {"via": "api_key", "key_id": run["requested"]["key_id"], "user_id": PERSON}
    assert failed.status_code == 200 and failed.json()["outcome"] == "failed"
    assert failed.json()["exit_status"] == 3 and failed.json()["stderr"] == "broken\n"
    assert ops.canary.read_text() == "here"

    records = list(reversed(ops.audit()))[-8:]
    assert [r["outcome"] for r in records] == ["approval_required", "denied", "denied", "denied", "denied",
                                               "validation_failed", "ok", "failed"]
    ok = records[6]
    assert ok["target"] == "test-host/echo" and ok["actor"] == run["requested"]["key_id"]
    assert ok["detail"]["user_id"] == PERSON and ok["detail"]["parameters"] == {"text": "hello", "choice": "plain",
                                                                                "number": -3}
    assert ok["detail"]["exit_status"] == 0 and ok["detail"]["duration_ms"] > 0
    assert ok["detail"]["stdout_sha256"] == run["stdout_sha256"] and "stdout" not in ok["detail"]
    assert records[7]["detail"]["exit_status"] == 3 and records[1]["detail"]["via"] == "api_key"
    assert records[2]["detail"]["user_id"] == ""


def test_injection_attempts_in_every_parameter_type_arrive_as_literal_values(ops):
    ops.begin_lease()
    ops.canary.write_text("here")
    choices = ["; rm -f canary", "$(rm -f canary)", "`rm -f canary`", "*"]

    for index, text in enumerate(INJECTIONS):
        ran = ops.run("echo", text=text, choice=choices[index % len(choices)], number=-(index % 10))
        assert ran.status_code == 200, ran.text
        assert ran.json()["stdout"] == f"{text}|{choices[index % len(choices)]}|{-(index % 10)}|"
    for number in ("1; rm -f canary", "$(id)", "1\n2", "--1", " 5"):
        refused = ops.run("echo", text="x", choice="plain", number=number)
        assert refused.status_code == 422 and refused.json()["kind"] == "validation_failed"
    option = ops.run("echo", text="x", choice="--help", number=1)
    assert option.status_code == 422 and "must be one of" in option.json()["error"]

    assert ops.canary.read_text() == "here"
    sent = [record.command for record in ops.ssh.server.commands][-len(INJECTIONS):]
    assert all(command.startswith("exec 'printf' '%s|' '") for command in sent)


def test_a_secret_parameter_reaches_the_host_and_nothing_else(ops):
    ops.begin_lease()

    ran = ops.run("keep-token", token="hunter2; rm -f canary")

    assert ran.status_code == 200 and ran.json()["outcome"] == "ok", ran.text
    assert (ops.ssh.server.root / "received").read_text() == "hunter2; rm -f canary"
    assert ran.json()["parameters"] == {"token": "[redacted]"} and "hunter2" not in ran.text
    assert ops.audit()[0]["detail"]["parameters"] == {"token": "[redacted]"}
    stored = json.dumps(ops.stack.services.store.table.scan_all(), default=str)
    assert "hunter2" not in stored and ops.ssh.server.client_private_key.splitlines()[1] not in stored
    assert "hunter2" not in ops.worker.log_path.read_text()


def test_a_host_key_mismatch_fails_closed(ops):
    ops.begin_lease()
    authenticated, commands = ops.ssh.server.authenticated, len(ops.ssh.server.commands)

    ran = ops.run("echo", host="impostor", text="x", choice="plain", number=1)

    assert ran.status_code == 200, ran.text
    run = ran.json()
    assert run["status"] == "error" and run["outcome"] == "failed" and run["failure"] == "host_key_mismatch"
    assert ops.ssh.server.wrong_fingerprint in run["error"]
    assert ops.ssh.server.authenticated == authenticated and len(ops.ssh.server.commands) == commands
    assert ops.audit()[0]["detail"]["failure"] == "host_key_mismatch"


def test_revoking_the_lease_mid_run_stops_the_command(ops):
    ops.begin_lease()
    started = ops.run("wait", wait=0, seconds=90)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    _wait_for_command("exec 'sleep' '90'", ops)

    revoked = ops.as_agent("DELETE", LEASE)
    run = ops.wait_run(run_id, {"cancelled", "complete", "error"})

    assert run_id in revoked.json()["stopped"]
    assert run["status"] == "cancelled" and run["outcome"] == "failed"
    record = _command("exec 'sleep' '90'", ops)
    _until(lambda: record.returncode is not None)
    assert record.signals == ["TERM"] and record.returncode < 0
    assert ops.audit()[0]["outcome"] == "failed" and ops.audit()[0]["detail"]["ended"] == "cancelled"
    assert ops.run("wait", seconds=1).json()["kind"] == "approval_required"


def test_a_lease_that_expires_mid_run_stops_the_command(ops):
    ops.begin_lease(ttl_seconds=10)
    started = ops.run("wait", wait=0, seconds=80)
    run_id = started.json()["run_id"]
    _wait_for_command("exec 'sleep' '80'", ops)

    run = ops.wait_run(run_id, {"expired", "cancelled", "complete", "error"}, timeout=60)

    assert run["status"] == "expired" and run["outcome"] == "failed"
    record = _command("exec 'sleep' '80'", ops)
    _until(lambda: record.returncode is not None)
    assert record.returncode < 0  # stopped, long before its 80 s


def test_a_forward_carries_http_and_closes_when_the_lease_ends(ops):
    ops.begin_lease()
    opened = ops.as_agent("POST", "/api/infra/ssh/forwards", json={"forward": "dashboard", "host": "test-host"})
    assert opened.status_code == 201, opened.text
    forward = opened.json()
    assert forward["state"] == "open" and forward["target"] == f"127.0.0.1:{ops.dashboard_port}"
    proxy = forward["proxy_url"]

    fetched = ops.as_agent("GET", f"{proxy}api/jobs?limit=5", headers={"Cookie": "mine=1"})
    posted = ops.as_agent("POST", f"{proxy}api/actions", content=b"restart please")

    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == {"method": "GET", "path": "/api/jobs?limit=5", "body": "", "cookie": None, "user": None}
    assert "set-cookie" not in fetched.headers and fetched.headers["content-security-policy"].startswith("sandbox")
    assert posted.json()["body"] == "restart please"
    listed = ops.as_agent("GET", "/api/infra/ssh/forwards").json()["forwards"]
    assert listed[0]["forward_id"] == forward["forward_id"] and listed[0]["state"] == "open"

    revoked = ops.as_agent("DELETE", LEASE)
    assert forward["forward_id"] in revoked.json()["stopped"]
    _until(lambda: ops.as_agent("GET", f"/api/infra/ssh/forwards/{forward['forward_id']}").json()["state"] == "closed")
    after = ops.as_agent("GET", f"{proxy}api/jobs")
    assert after.status_code == 403 and after.json()["kind"] == "approval_required"
    record = ops.audit("infra_ssh.forward")[0]
    assert record["outcome"] == "ok" and record["detail"]["closed"] == "cancelled"


def test_a_run_waits_for_a_runtime_that_reaches_its_host_and_revoking_cancels_it(ops):
    ops.begin_lease()

    waiting = ops.run("fail", host="far-host", wait=2)  # no runtime has the label zone=far
    revoked = ops.as_agent("DELETE", LEASE)

    assert waiting.status_code == 202 and waiting.json()["status"] == "queued"
    assert waiting.json()["run_id"] in revoked.json()["stopped"]
    run = ops.wait_run(waiting.json()["run_id"], {"cancelled"})
    assert run["outcome"] == "failed" and "cancelled" in run["error"]
    assert ops.audit()[0]["target"] == "far-host/fail" and ops.audit()[0]["outcome"] == "failed"


def test_a_kms_encrypted_client_key_works(ops):
    kms = composition.services().aws.client("kms")
    ciphertext = kms.encrypt(KeyId=ops.stack.services.settings.kms_key_alias,
                             Plaintext=ops.key_file.read_bytes(), EncryptionContext=KMS_CONTEXT)["CiphertextBlob"]
    original = ops.inventory_path.read_text()
    ops.inventory_path.write_text(inventory(ops.ssh.server, ops.key_file, ops.dashboard_port,
                                            f"kms:{base64.b64encode(ciphertext).decode()}"))
    try:
        ops.begin_lease()
        ran = ops.run("fail", host="sealed-host")
        assert ran.status_code == 200, ran.text
        assert ran.json()["exit_status"] == 3  # it connected with the key KMS gave back, and ran
    finally:
        ops.inventory_path.write_text(original)


# --- helpers ------------------------------------------------------------------------------------------


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _command(command: str, ops: Ops):
    return next(record for record in reversed(ops.ssh.server.commands) if record.command == command)


def _wait_for_command(command: str, ops: Ops) -> None:
    _until(lambda: any(record.command == command for record in ops.ssh.server.commands))


# --- the CLI -------------------------------------------------------------------------------------------


def test_the_cli_requests_a_lease_a_person_approves_and_runs_and_forwards(ops, tmp_path):
    from tests.e2e.conftest import BerthCli

    berth = BerthCli(tmp_path / "berth-config", ops.stack.api_url)
    assert berth("login", "--api", berth.api_url, "--key", "-", stdin=f"{ops.key}\n").returncode == 0
    ops.owner.delete(LEASE)

    hosts = berth("ssh", "hosts")
    asked = berth("ssh", "lease", "request", "--reason", "from the cli", "--ttl", "300", "--json")
    lease_id = json.loads(asked.stdout)["lease"]["lease_id"]
    approved = berth("ssh", "lease", "approve", lease_id, "--password-stdin", stdin="correct-horse\n")
    ran = berth("ssh", "run", "echo", "--host", "test-host", "-P", "text=$(id)", "-P", "choice=plain", "-P", "number=2",
                "--json")
    failed = berth("ssh", "run", "fail", "--host", "test-host")
    runs = berth("ssh", "runs")
    opened = berth("ssh", "forward", "open", "dashboard", "--host", "test-host", "--json")
    forward_id = json.loads(opened.stdout)["forward_id"]
    closed = berth("ssh", "forward", "close", forward_id)
    revoked = berth("ssh", "lease", "revoke")

    assert hosts.returncode == 0 and "test-host" in hosts.stdout and "file" in hosts.stdout
    assert json.loads(asked.stdout)["lease"]["state"] == "pending"
    assert json.loads(asked.stdout)["lease"]["requested_for"] == ops.owner.get("/v1/auth/me").json()["user"]["email"]
    assert approved.returncode == 0 and "active" in approved.stdout, approved.stderr
    assert ran.returncode == 0 and json.loads(ran.stdout)["stdout"] == "$(id)|plain|2|", ran.stderr
    assert failed.returncode == 5 and "broken" in failed.stderr and "exit 3" in failed.stderr
    assert runs.returncode == 0 and json.loads(ran.stdout)["run_id"] in runs.stdout
    assert json.loads(opened.stdout)["state"] == "open"
    assert closed.returncode == 0 and forward_id in closed.stdout
    assert revoked.returncode == 0 and "revoked" in revoked.stdout


# --- the same through /mcp, with the official MCP client ------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def mcp_url(ops):
    """berth's own /mcp on the stack, where the infra SSH tools are one family among the others."""
    return f"{ops.stack.api_url}/mcp"


@pytest.mark.anyio
async def test_the_same_through_mcp_with_the_official_client(ops, mcp_url):
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session_for(headers: dict):
        http = httpx2.AsyncClient(headers=headers, timeout=60)
        return http, streamable_http_client(mcp_url, http_client=http)

    ops.owner.delete(LEASE)
    http, transport = await session_for(ops.agent())
    async with http, transport as streams, ClientSession(*streams) as mcp:
        await mcp.initialize()
        names = {tool.name for tool in (await mcp.list_tools()).tools}
        infra = {name for name in names if name.startswith("infra_ssh_")}
        assert len(infra) == 13 and {"infra_ssh_list_hosts", "infra_ssh_open_forward"} <= infra

        hosts = await mcp.call_tool("infra_ssh_list_hosts", {})
        refused = await mcp.call_tool("infra_ssh_run_action", {"action": "echo", "host": "test-host",
                                                               "parameters": {"text": "x", "choice": "plain",
                                                                              "number": 1}})
        asked = await mcp.call_tool("infra_ssh_request_lease", {"reason": "via mcp", "ttl_seconds": 300})
        lease_id = asked.structured_content["lease"]["lease_id"]
        assert [h["name"] for h in hosts.structured_content["hosts"]][:1] == ["test-host"]
        assert refused.is_error and _refusal(refused).startswith("approval_required:")
        assert asked.structured_content["lease"]["state"] == "pending"

        approved = ops.owner.post(f"{LEASE}/approve", json={"lease_id": lease_id})  # a person, signed in
        assert approved.status_code == 200, approved.text
        invalid = await mcp.call_tool("infra_ssh_run_action", {"action": "echo", "host": "test-host",
                                                               "parameters": {"text": "x", "choice": "; id",
                                                                              "number": 1}})
        ran = await mcp.call_tool("infra_ssh_run_action", {"action": "echo", "host": "test-host", "parameters": {
            "text": "$(id)", "choice": "plain", "number": "4"}})
        run = ran.structured_content
        fetched = await mcp.call_tool("infra_ssh_get_run", {"run_id": run["run_id"]})
        listed = await mcp.call_tool("infra_ssh_list_runs", {"limit": 5})
        assert invalid.is_error and _refusal(invalid).startswith("validation_failed:")
        assert not ran.is_error and run["outcome"] == "ok" and run["stdout"] == "$(id)|plain|4|"
        assert fetched.structured_content["run_id"] == run["run_id"]
        assert listed.structured_content["runs"][0]["run_id"] == run["run_id"]

        opened = await mcp.call_tool("infra_ssh_open_forward", {"forward": "dashboard", "host": "test-host"})
        forward = opened.structured_content
        through = ops.as_agent("GET", f"{forward['proxy_url']}health")
        forwards = await mcp.call_tool("infra_ssh_list_forwards", {})
        closed = await mcp.call_tool("infra_ssh_close_forward", {"forward_id": forward["forward_id"]})
        assert forward["state"] == "open" and through.json()["path"] == "/health"
        assert forwards.structured_content["forwards"][0]["forward_id"] == forward["forward_id"]
        assert closed.structured_content["status"] in ("cancelled", "running")

        ended = await mcp.call_tool("infra_ssh_end_lease", {})
        assert ended.structured_content["lease"]["state"] == "ended"

    http, transport = await session_for(ops.agent(user=None))
    async with http, transport as streams, ClientSession(*streams) as mcp:
        await mcp.initialize()
        anonymous = await mcp.call_tool("infra_ssh_request_lease", {"reason": "who?", "ttl_seconds": 60})
        assert anonymous.is_error and _refusal(anonymous).startswith("denied:")

    http, transport = await session_for({"X-API-Key": ops.standard_key, "X-User-Id": PERSON})
    async with http, transport as streams, ClientSession(*streams) as mcp:
        await mcp.initialize()
        assert not {tool.name for tool in (await mcp.list_tools()).tools} & infra
        hidden = await mcp.call_tool("infra_ssh_list_hosts", {})
        assert hidden.is_error and "admin-tier" in hidden.content[0].text

    outcomes = [(r["detail"].get("via"), r["outcome"]) for r in ops.audit()[:3]]
    assert outcomes == [("api_key", "ok"), ("api_key", "validation_failed"), ("api_key", "approval_required")]


def _refusal(result) -> str:
    """A tool error's text after the SDK's "Error executing tool NAME: " prefix."""
    return result.content[0].text.split(": ", 1)[1]
