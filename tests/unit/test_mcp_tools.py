"""berth's `/mcp` through the Lambda handler (functions.api: Mangum, lifespan off), one JSON-RPC
message per API Gateway invocation, many in a row, authenticated by real API keys of each tier
(moto in-process): what each tier lists and may call, the tools' schemas and hints, user mistakes
as tool errors, and the same services as the REST routes."""

import json
import subprocess
import sys

import pytest

from app.mcp.berth import berth_tools
from app.schemas.sandboxes import SandboxRequest
from tests.support.lambda_events import http_event
from tests.support.mcp_tiers import ADMIN_TOOLS, INFRA_SSH_READS, READ_TOOLS, STANDARD_TOOLS


@pytest.fixture
def handler(aws_resources):
    import importlib

    import functions.api

    return importlib.reload(functions.api).handler


@pytest.fixture
def keys(handler) -> dict[str, str]:
    created = handler(http_event("POST", "/v1/auth/signup",
                                 {"name": "Ada", "email": "ada@example.com", "password": "correct-horse"}), None)
    token = json.loads(created["body"])["token"]
    minted = {}
    for tier in ("read", "standard", "admin"):
        answer = handler(http_event("POST", "/api/auth/keys/generate", {"name": tier, "tier": tier},
                                    {"authorization": f"Bearer {token}"}), None)
        minted[tier] = json.loads(answer["body"])["key"]
    return minted


def rpc(handler, key: str, method: str, params: dict | None = None, **options) -> dict:
    message = {"jsonrpc": "2.0", "id": 7, "method": method, **({"params": params} if params is not None else {})}
    response = handler(http_event("POST", "/mcp", message, {"x-api-key": key, **options.pop("headers", {})},
                                  **options), None)
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert "error" not in body, body  # a user's mistake is never a protocol error
    return body["result"]


def call(handler, key: str, name: str, arguments: dict | None = None, headers: dict | None = None) -> dict:
    return rpc(handler, key, "tools/call", {"name": name, "arguments": arguments or {}}, headers=headers or {})


def listed(handler, key: str) -> dict[str, dict]:
    return {entry["name"]: entry for entry in rpc(handler, key, "tools/list")["tools"]}


def test_each_tier_lists_what_it_may_call(handler, keys):
    # containers 3, marketplace 2, installations 3, shared tools 1, sandboxes 4, service 1, infra SSH 13
    assert len(ADMIN_TOOLS) == 27
    assert set(listed(handler, keys["read"])) == READ_TOOLS
    assert set(listed(handler, keys["standard"])) == STANDARD_TOOLS
    assert set(listed(handler, keys["admin"])) == ADMIN_TOOLS
    assert {made.name: made.tier.value for made in berth_tools()} == {
        **dict.fromkeys(READ_TOOLS, "read"), **dict.fromkeys(STANDARD_TOOLS - READ_TOOLS, "standard"),
        **dict.fromkeys(ADMIN_TOOLS - STANDARD_TOOLS, "admin")}


def test_every_tool_states_its_hints_and_answers_a_typed_result(handler, keys):
    for name, entry in listed(handler, keys["admin"]).items():
        hints = entry["annotations"]
        assert {"readOnlyHint", "destructiveHint", "idempotentHint", "title"} <= set(hints), name
        assert hints["readOnlyHint"] == (name in READ_TOOLS | INFRA_SSH_READS), name
        assert entry["outputSchema"]["type"] == "object" and entry["description"], name
        assert "\n" not in entry["description"], name
    everything = listed(handler, keys["admin"])
    assert everything["sandbox_action"]["annotations"]["destructiveHint"] is True
    assert everything["create_sandbox"]["annotations"]["destructiveHint"] is False


def test_input_schemas_are_precise(handler, keys):
    everything = listed(handler, keys["admin"])
    action = everything["container_action"]["inputSchema"]
    assert action["required"] == ["container_id", "action"]
    assert action["properties"]["action"]["enum"] == ["start", "stop", "restart", "remove"]
    assert action["properties"]["container_id"]["pattern"] == "^job_[0-9a-z]{23}$"
    assert everything["sandbox_action"]["inputSchema"]["properties"]["action"]["enum"] == [
        "start", "stop", "restart", "delete"]
    page = everything["list_sandboxes"]["inputSchema"]["properties"]
    assert (page["limit"]["minimum"], page["limit"]["maximum"]) == (1, 200)
    wait = everything["call_sandbox_tool"]["inputSchema"]["properties"]["wait_seconds"]
    assert (wait["minimum"], wait["maximum"]) == (0, 25)
    assert everything["call_sandbox_tool"]["inputSchema"]["required"] == ["sandbox_id", "name"]


def test_create_sandbox_takes_what_the_rest_body_takes_with_the_same_bounds(handler, keys):
    tool_schema = listed(handler, keys["standard"])["create_sandbox"]["inputSchema"]
    rest_schema = SandboxRequest.model_json_schema()
    assert "required" not in tool_schema and "required" not in rest_schema  # a command or a package
    bounds = ("type", "minLength", "maxLength", "minimum", "maximum", "maxProperties", "enum")
    for name in ("start_command", "package", "runtime", "transport", "env", "ttl_seconds", "labels"):
        ours, theirs = tool_schema["properties"][name], rest_schema["properties"][name]
        assert {k: ours.get(k) for k in bounds} == {k: theirs.get(k) for k in bounds}, name
        assert _any_of_bounds(ours) == _any_of_bounds(theirs), name


def _any_of_bounds(schema: dict) -> list:
    return [{k: v for k, v in option.items() if k != "title"} for option in schema.get("anyOf", [])]


def test_a_sandbox_made_over_mcp_is_the_one_rest_sees_and_the_tiers_hold(handler, keys):
    refused = call(handler, keys["read"], "create_sandbox", {"start_command": "python3 server.py"})
    assert refused["isError"] is True
    assert refused["content"][0]["text"].endswith("this action needs a standard-tier key; yours is read")
    created = call(handler, keys["standard"], "create_sandbox",
                   {"start_command": "python3 server.py", "runtime": "python", "env": {"TOKEN": "s3cret-value"},
                    "labels": {"team": "a"}, "wait": True})  # no runtime yet: queued as asked
    assert created["isError"] is False
    started = created["structuredContent"]
    sandbox_id = started["sandbox"]["id"]
    assert started["sandbox"]["state"] == "starting" and started["tools"] is None
    assert "poll list_sandboxes" in started["next"] and started["sandbox"]["env"] == ["TOKEN"]
    assert "s3cret-value" not in json.dumps(created)

    rest = handler(http_event("GET", f"/api/sandboxes/{sandbox_id}", headers={"x-api-key": keys["read"]}), None)
    assert json.loads(rest["body"])["labels"] == {"team": "a"}
    page = call(handler, keys["read"], "list_sandboxes", {"status": "queued"})["structuredContent"]
    assert [entry["id"] for entry in page["sandboxes"]] == [sandbox_id] and page["next_cursor"] is None

    not_running = call(handler, keys["standard"], "call_sandbox_tool", {"sandbox_id": sandbox_id, "name": "echo"})
    assert not_running["isError"] is True and f"sandbox {sandbox_id} is queued, not running" in \
        not_running["content"][0]["text"]
    inspected = call(handler, keys["read"], "inspect_container", {"container_id": sandbox_id})["structuredContent"]
    assert inspected["sandbox"]["id"] == sandbox_id and inspected["processes"] is None
    above = call(handler, keys["standard"], "sandbox_action", {"sandbox_id": sandbox_id, "action": "delete"})
    assert above["isError"] is True and "needs an admin-tier key; yours is standard" in above["content"][0]["text"]
    deleted = call(handler, keys["admin"], "sandbox_action", {"sandbox_id": sandbox_id, "action": "delete"})
    assert deleted["structuredContent"] == {"success": True, "id": sandbox_id, "action": "delete",
                                            "state": "cancelled"}


@pytest.mark.parametrize(("name", "arguments", "expected"), [
    ("inspect_container", {"container_id": "job_00000000000000000000000"}, "no sandbox job_00000000000000000000000"),
    ("inspect_container", {"container_id": "../etc"}, "String should match pattern"),
    ("create_sandbox", {"start_command": ""}, "invalid sandbox: Value error, give start_command or package"),
    ("create_sandbox", {"package": {"registryType": "npm", "identifier": "../x"}}, "not a valid"),
    ("create_sandbox", {"start_command": "x", "runtime": "ruby"}, "Input should be 'node' or 'python'"),
    ("create_sandbox", {"start_command": "x", "wait_seconds": 60}, "less than or equal to 25"),
    ("create_sandbox", {"start_command": "python3 x.py", "ttl_seconds": 999999}, "max_ttl_seconds"),
    ("create_sandbox", {"start_command": "rm -rf /"}, "refused by policy"),
    ("list_sandboxes", {"limit": 0}, "greater than or equal to 1"),
    ("list_sandboxes", {"cursor": "bm90IGEgY3Vyc29y"}, "invalid pagination cursor"),
    ("container_action", {"container_id": "job_00000000000000000000000", "action": "explode"}, "Input should be"),
])
def test_user_mistakes_are_tool_errors_that_say_what_is_wrong(handler, keys, name, arguments, expected):
    result = call(handler, keys["admin"], name, arguments)
    assert result["isError"] is True and expected in result["content"][0]["text"], result


def test_service_status_says_who_is_asking_on_invocation_after_invocation(handler, keys):
    for tier in ("read", "standard", "admin", "read", "admin"):
        status = call(handler, keys[tier], "service_status")["structuredContent"]
        assert status["service"]["name"] == "berth" and status["caller"]["tier"] == tier
        assert status["caller"]["kind"] == "api_key" and status["checks"] is None
    checked = call(handler, keys["read"], "service_status", {"include_checks": True})["structuredContent"]
    assert checked["checks"]["table"]["ok"] is True and checked["checks"]["kms"]["ok"] is True


def test_shared_tools_are_listed_for_the_user_the_key_names(handler, keys):
    own = call(handler, keys["read"], "list_shared_tools")["structuredContent"]
    assert own["user_id"].startswith("usr_")
    named = call(handler, keys["read"], "list_shared_tools", headers={"x-user-id": "user-42"})["structuredContent"]
    assert named["user_id"] == "user-42"
    assert [(tool["id"], tool["client_registered"], tool["connection"]["connected"])
            for tool in named["shared_tools"]] == [("io.github.github/github-mcp-server", False, False)]
    odd = call(handler, keys["read"], "list_shared_tools", headers={"x-user-id": "two words"})
    assert odd["isError"] is True and "X-User-Id must be" in odd["content"][0]["text"]


def test_a_session_token_works_too_and_a_bad_credential_is_a_401_mcp_clients_read(handler, keys):
    created = handler(http_event("POST", "/v1/auth/login", {"email": "ada@example.com", "password": "correct-horse"}),
                      None)
    session = json.loads(created["body"])["token"]
    answer = handler(http_event("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                {"authorization": f"Bearer {session}"}), None)
    assert set(tool["name"] for tool in json.loads(answer["body"])["result"]["tools"]) == ADMIN_TOOLS
    refused = handler(http_event("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                 {"x-api-key": "bak_not-a-key-at-all"}), None)
    assert refused["statusCode"] == 401
    assert json.loads(refused["body"])["error"]["message"] == "invalid, expired or revoked credentials"


def test_the_gateway_domain_is_allowed_and_other_hosts_are_refused(handler, keys):
    assert rpc(handler, keys["read"], "tools/list")["tools"]  # the gateway's own name: not configured, allowed
    rebound = handler(http_event("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                 {"x-api-key": keys["read"]}, host="evil.example.com"), None)
    assert rebound["statusCode"] == 421
    cross_site = handler(http_event("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                    {"x-api-key": keys["read"], "origin": "https://evil.example.com"}), None)
    assert cross_site["statusCode"] == 403


def _probe(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_answering_health_and_the_openapi_document_loads_no_mcp_sdk():
    probe = ("import json, sys, functions.api\n"
             "from tests.support.lambda_events import http_event\n"
             "health = functions.api.handler(http_event('GET', '/v1/health'), None)\n"
             "document = functions.api.handler(http_event('GET', '/openapi.json'), None)\n"
             "paths = json.loads(document['body'])['paths']\n"
             "print(health['statusCode'], document['statusCode'], 'mcp.server' in sys.modules, '/mcp' in paths, "
             "'/api/shared-tools/{tool_id}/oauth/state' in paths)")
    assert _probe(probe) == "200 200 False False True"


TIME = "io.github.modelcontextprotocol/time"  # curated: in the catalog without any registry
GITHUB = "io.github.github/github-mcp-server"  # curated and per-user


def rest(handler, key: str, path: str, query: str = "") -> dict:
    event = http_event("GET", path, headers={"x-api-key": key})
    event["rawQueryString"] = query
    return json.loads(handler(event, None)["body"])


def test_search_finds_a_curated_entry_and_its_details_say_what_installing_takes(handler, keys):
    found = call(handler, keys["read"], "search_marketplace", {"query": "time zone", "registry_type": "pypi"})
    assert found["isError"] is False
    page = found["structuredContent"]
    assert [entry["id"] for entry in page["tools"]] == [TIME] and page["next_cursor"] is None
    assert (page["tools"][0]["origin"], page["tools"][0]["install_kind"]) == ("curated", "package")
    assert page == rest(handler, keys["read"], "/api/marketplace/tools", "q=time+zone&registry_type=pypi")

    shown = call(handler, keys["read"], "get_tool_details", {"entry_id": TIME})["structuredContent"]
    assert [(each["name"], each["kind"], each["required"], each["secret"]) for each in shown["inputs"]] == [
        ("timezone", "argument", False, False)]
    assert shown["versions"] == [shown["version"]] and shown["document"]["name"] == TIME
    assert shown == rest(handler, keys["read"], f"/api/marketplace/tools/{TIME}")


def test_a_read_key_cannot_install_and_an_installation_made_over_mcp_is_listed(handler, keys):
    refused = call(handler, keys["read"], "install_tool", {"entry_id": TIME})
    assert refused["isError"] is True
    assert refused["content"][0]["text"].endswith("this action needs a standard-tier key; yours is read")

    made = call(handler, keys["standard"], "install_tool", {"entry_id": TIME, "config": {"timezone": "Europe/Paris"}})
    assert made["isError"] is False
    installed = made["structuredContent"]
    installation = installed["installation"]
    assert (installation["entry_id"], installation["kind"], installation["scope"], installation["state"]) == (
        TIME, "package", "workspace", "ready")
    assert installation["config"] == {"timezone": "Europe/Paris"} and installation["sandbox_id"] is None
    assert f"call_installed_tool (installation_id {installation['id']})" in installed["next"]

    listing = call(handler, keys["read"], "list_installations")["structuredContent"]
    assert [found["id"] for found in listing["installations"]] == [installation["id"]]
    assert listing == rest(handler, keys["read"], "/api/installations")


def test_a_per_user_entry_is_installed_for_the_user_the_key_acts_for(handler, keys):
    made = call(handler, keys["standard"], "install_tool", {"entry_id": GITHUB}, headers={"x-user-id": "user-42"})
    installed = made["structuredContent"]
    installation = installed["installation"]
    assert (installation["scope"], installation["user_id"], installation["state"]) == ("user", "user-42",
                                                                                        "needs_oauth")
    assert installation["pending"] == ["token"] and "sign in" in installed["next"]

    # It holds its user's credentials: another user of the workspace cannot call it.
    other = call(handler, keys["standard"], "call_installed_tool",
                 {"installation_id": installation["id"], "name": "get_me"}, headers={"x-user-id": "user-7"})
    assert other["isError"] is True and f"no installation {installation['id']}" in other["content"][0]["text"]
    waiting = call(handler, keys["standard"], "call_installed_tool",
                   {"installation_id": installation["id"], "name": "get_me"}, headers={"x-user-id": "user-42"})
    assert waiting["isError"] is True and "waits for its user's sign-in (OAuth)" in waiting["content"][0]["text"]


def test_calling_an_installed_tool_with_no_runtime_to_start_its_server_says_so(handler, keys):
    made = call(handler, keys["standard"], "install_tool", {"entry_id": TIME})["structuredContent"]
    answer = call(handler, keys["standard"], "call_installed_tool",
                  {"installation_id": made["installation"]["id"], "name": "get_current_time"})
    assert answer["isError"] is True and "no registered runtime offers mcp.run" in answer["content"][0]["text"]


@pytest.mark.parametrize(("name", "arguments", "expected"), [
    ("get_tool_details", {"entry_id": "io.example/none"}, "no marketplace entry io.example/none"),
    ("get_tool_details", {"entry_id": ""}, "at least 1 character"),
    ("search_marketplace", {"limit": 101}, "less than or equal to 100"),
    ("search_marketplace", {"cursor": "not base64!"}, "invalid pagination cursor"),
    ("install_tool", {"entry_id": "io.example/none"}, "no marketplace entry io.example/none"),
    ("install_tool", {"entry_id": TIME, "config": {"colour": "red"}}, "unknown setting colour: this server takes"),
    ("install_tool", {"entry_id": TIME, "kind": "remote"}, "cannot be installed: berth runs a streamable-HTTP remote"),
    ("call_installed_tool", {"installation_id": "ins_00000000000000000000000", "name": "x"},
     "no installation ins_00000000000000000000000"),
    ("call_installed_tool", {"installation_id": "../ins", "name": "x"}, "String should match pattern"),
])
def test_marketplace_and_installation_mistakes_are_tool_errors(handler, keys, name, arguments, expected):
    result = call(handler, keys["admin"], name, arguments)
    assert result["isError"] is True and expected in result["content"][0]["text"], result
