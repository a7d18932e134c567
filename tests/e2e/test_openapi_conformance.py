"""The OpenAPI document tells the truth: schemathesis runs every check it has over every route of
the real local stack and finds nothing.

It runs as a user would (`schemathesis run .../openapi.json --checks all`), in a process of its
own, signed in with a session token; the runtime protocol's routes are called with the token of
a runtime registered through the API for the purpose. Examples per operation are bounded so the
run takes about a minute and a half. A finding names the operation and the check.

Run it alone: `python -m pytest -q tests/e2e/test_openapi_conformance.py`. Set
`BERTH_SCHEMATHESIS_SEED` to replay another run's seed (printed on failure), or to `random`.
"""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import httpx
import pytest

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, REPOSITORY, new_account

SEED = os.environ.get("BERTH_SCHEMATHESIS_SEED", "20261125")
MAX_EXAMPLES = 6
HOOKS = "tests.e2e.schemathesis_hooks"
# Routes whose token is a runtime's, not a user's.
RUNTIME_ROUTES = r"^/v1/cloud/runtimes/(heartbeat|lease|ack|visibility|jobs/|control/)"

POSITIVE_EXPECTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default

# Where a check cannot apply, and why; nothing else is excluded. `where` is a method and a path
# pattern, both of which must match (the operations are then named by their operation ids:
# schemathesis ORs separate `include-*` keys).
EXCLUSIONS = [
    {
        # The runtime proxy forwards a request to the HTTP server inside a sandbox and answers with
        # whatever that server answers: its statuses, content types and bodies are the sandbox's,
        # not berth's, so they cannot be documented here. Every other check still applies.
        "where": (".*", r"^/api/runtime/proxy/"),
        "checks": {"status_code_conformance": {"enabled": False}, "content_type_conformance": {"enabled": False},
                   "response_schema_conformance": {"enabled": False}},
    },
    {
        # DELETE of a job (and so of a sandbox, which is a job) cancels it: the runtime spec keeps a
        # cancelled job readable, with its status and its events, so a read after DELETE answers 200
        # (a running sandbox shows `ending` until its runtime has stopped it). Changes after DELETE
        # are refused with 409, which use_after_free does not flag.
        "where": ("GET", r"^/(v1/jobs|v1/sandbox/sessions|api/sandboxes)/"),
        "checks": {"use_after_free": {"enabled": False}},
    },
    {
        # Tokens mailed for a password reset or an address check: the runtime spec answers 400 for
        # a well-formed token that is invalid or expired, and no schema can state which tokens exist.
        "where": ("POST", r"^/v1/auth/(reset|verify)$"),
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "400"]}},
    },
    {
        # The operations that take a sandbox's server as a registry package (`package`, server.json's
        # shape, arguments and inputs nested in it). Its required environment variables must come in
        # the request's `env`, and a required argument needs a value: rules across fields that JSON
        # Schema cannot state (422 otherwise). And the coverage phase alone, which walks every
        # keyword of that schema, would take the run past its two-minute budget: the examples,
        # fuzzing and stateful phases test these operations, every check applying.
        "where": ("POST", r"^/(v1/jobs|v1/sandbox/sessions|api/sandboxes)$"),
        "phases": {"coverage": {"enabled": False}},
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "422"]}},
    },
    {
        # The OAuth callback's state is one berth handed out for a sign-in: a well-formed stranger
        # is answered 400 (a page saying to start again), which no schema can state.
        "where": ("GET", r"^/api/auth/callback$"),
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "400"]}},
    },
    {
        # Files arrive as multipart parts; schemathesis sends the form without any file part for an
        # array of binary strings, which the route answers 422 ("files: Field required").
        "where": ("POST", r"^/api/installations/[^/]+/files$"),
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "422"]}},
    },
    {
        # Entry ids hold a `/` (registry names, `namespace/name`), so a GET of this install URL is
        # the read of an entry whose id ends in `/install`: answered as such (404, or 422 for an id
        # too long), not 405: every other undeclared method is still tried (a 405 naming POST alone).
        "where": ("POST", r"^/api/marketplace/tools/\{entry_id\}/install$"),
        "phases": {"coverage": {"unexpected-methods": ["put", "patch", "delete", "options", "trace"]}},
    },
    {
        # A key's `expires_at` must lie in the future, which JSON Schema cannot state (400 otherwise).
        "where": ("POST", r"^/api/auth/keys/generate$"),
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "400"]}},
    },
    {
        # Which field names a model's source depends on its type (huggingface: a repo id as
        # externalId, model or sourceUri; s3: sourceUri; local_path: path; openai_compatible: an
        # endpoint's URL and the model it serves), and a repo id's form applies to whichever field
        # holds it: rules across fields that JSON Schema cannot state (422 saying which).
        "where": ("POST", r"^/v1/(model-sources/resolve|model-profiles)$"),
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "422"]}},
    },
    {
        # Installing MatrixShell names no resource: schemathesis links it to a DELETE whose id it
        # cannot place, then calls a 200 from it a deleted resource still available.
        "where": ("POST", r"^/v1/matrixshell/install$"),
        "checks": {"use_after_free": {"enabled": False}},
    },
    {
        # A listing's `cursor` is opaque: only one the listing handed out is valid, which no schema
        # can state, so a well-formed stranger is refused with 400 (documented) on every paged route.
        "where": "paged",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "400"]}},
    },
]


def _operation_ids(document: dict, where) -> list[str]:
    """The ids of the operations `where` names: (method pattern, path pattern), or "paged" (every
    operation with a `cursor` query parameter)."""
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if where == "paged":
                chosen = any(p.get("name") == "cursor" and p.get("in") == "query"
                             for p in operation.get("parameters", []))
            else:
                chosen = bool(re.fullmatch(where[0], method.upper()) and re.search(where[1], path))
            if chosen:
                found.append(operation["operationId"])
    assert found, f"no operation is {where}: update the exclusion"
    return found


def _ssh_inventory(tmp_path_factory) -> Path:
    """An infra SSH inventory, so its routes answer from it (no host behind it: a run is refused or
    fails; the document's statuses are what is checked)."""
    import asyncssh

    directory = tmp_path_factory.mktemp("ssh")
    client_key = directory / "id_ed25519"
    client_key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    client_key.chmod(0o600)
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    inventory = directory / "inventory.yaml"
    port = free_port()
    inventory.write_text(f"""
hosts:
  - name: lab-1
    address: 127.0.0.1
    port: {port}
    user: operator
    labels: [lab]
    host_key: "[127.0.0.1]:{port} {host_key}"
    client_key: "file:{client_key}"
actions:
  - name: uptime
    command: [uptime]
    labels: [lab]
forwards:
  - {{name: dashboard, target_port: 8265, hosts: [lab-1]}}
""")
    return inventory


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    """The local stack as the other end-to-end tests have it, but for the event streams' window:
    a stream of a job that is not over holds its request for that long, and the run reads many."""
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600,
                           environment={**FAST_SETTINGS, "BERTH_SSE_WINDOW_SECONDS": "1",
                                        # No model hub here: search answers from the catalog at once.
                                        "BERTH_HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                        "BERTH_HUB_TIMEOUT_SECONDS": "1",
                                        # No registry either: a refresh fails at once, keeping the catalog.
                                        "BERTH_MCP_REGISTRY_URLS": f"http://127.0.0.1:{free_port()}",
                                        "BERTH_SSH_INVENTORY": str(_ssh_inventory(tmp_path_factory))})
    running = LocalStack(options).start()
    yield running
    running.stop()


def _register_runtime(account) -> str:
    """A runtime of the account's workspace, registered through the API as a worker would."""
    body = {"join_token": account.join_token(), "name": "conformance", "queue_mode": "lease",
            "capabilities": ["mcp.test", "model.inspect", "tool.run"], "max_concurrent_jobs": 4}
    response = account.post("/v1/cloud/runtimes/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()["runtime_token"]


def _toml(value) -> str:
    """Just enough TOML for the configuration below: tables of strings, booleans and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"


def _configuration(stack, document: dict, session: str, logout_session: str, runtime_token: str) -> str:
    operations = [
        {"include-path-regex": RUNTIME_ROUTES, "headers": {"Authorization": f"Bearer {runtime_token}"}},
        # Logging out ends the caller's sessions (`?all=true`: all of the user's): another user's.
        {"include-path": "/v1/auth/logout", "headers": {"Authorization": f"Bearer {logout_session}"}},
        *({"include-operation-id": _operation_ids(document, exclusion["where"]),
           **{key: value for key, value in exclusion.items() if key != "where"}} for exclusion in EXCLUSIONS),
    ]
    lines = [f"base-url = {json.dumps(stack.api_url)}",
             f"headers = {_toml({'Authorization': f'Bearer {session}'})}", ""]
    for operation in operations:
        lines.append("[[operations]]")
        lines += [f"{json.dumps(key)} = {_toml(value)}" for key, value in operation.items()]
        lines.append("")
    return "\n".join(lines)


def _finding(operation: str, text: str) -> str:
    """`OPERATION: the checks that failed — the answer`, from one failure's text in the report
    (its lines: `- ST202 Schema-valid request rejected`, ..., `[422] Unprocessable Content:`, the
    body, `curl ...` to reproduce it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    checks = "; ".join(line[2:] for line in lines if line.startswith("- ST")) or (lines[0] if lines else "?")
    status = next((n for n, line in enumerate(lines) if re.match(r"^\[\d{3}\]", line)), None)
    answer = " ".join(lines[status:status + 2])[:400] if status is not None else ""
    if operation == "Stateful tests":  # a sequence of calls: name the one that failed
        operation = "(stateful) " + next((line for line in lines if line.startswith("curl ")), "")[:200]
    return f"{operation}: {checks} — {answer}"


def _findings(report: Path) -> list[str]:
    """One line per failure or error in the JUnit report: the operation, the checks, the answer."""
    found = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            found.append(_finding(case.get("name") or "?", problem.text or problem.get("message") or ""))
    return found


@pytest.fixture(scope="module")
def conformance(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("schemathesis")
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        account, other = new_account(api), new_account(api)
        runtime_token = _register_runtime(account)
        document = api.get("/openapi.json").json()
    config = directory / "schemathesis.toml"
    config.write_text(_configuration(stack, document, account.token, other.token, runtime_token))
    report = directory / "junit.xml"
    seed = [] if SEED == "random" else ["--seed", SEED]
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{stack.api_url}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
               "--generation-database", "none", "--no-shrink", "--workers", "1", "--no-color",
               # Hypothesis' health checks judge generating the data (its speed on this loaded 2-core
               # machine, how much a pattern filters out), not the API's answers.
               "--suppress-health-check", "too_slow,filter_too_much",
               "--report", "junit", "--report-junit-path", str(report), *seed]
    # In a directory of its own, where schemathesis keeps its cache; the hooks import from the repository.
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=directory)
    (directory / "output.txt").write_text(done.stdout + done.stderr)
    return done, report


# About five minutes for 131 operations on the 2-core machine: schemathesis' own generation
# dominates (the stack answers all of it in about 75 s).
@pytest.mark.timeout(720)
def test_every_route_answers_as_the_openapi_document_says(conformance):
    done, report = conformance
    assert report.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    findings = _findings(report)
    assert not findings and done.returncode == 0, (
        f"schemathesis found {len(findings)} problem(s) (seed {SEED}):\n" + "\n".join(findings)
        + f"\n\nThe whole output: {report.parent / 'output.txt'}")
