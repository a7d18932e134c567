"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, from npm) against the
/mcp foundation served by uvicorn, for the server scenarios that apply to berth's endpoint.

The suite's client sends no credentials and expects its fixture tools (`test_simple_text`,
`test_error_handling`), so this server has those two, made by berth's rules, and an authenticator
that lets anyone in as an admin. Scenarios left out, and why (docs/decisions.md):
- a back channel (logging, progress, sampling, elicitation, SSE streams): a stateless server
  answering JSON has none;
- resources, prompts, completions: berth's endpoint serves tools only;
- content fixtures (image, audio, embedded resources, mixed content) and JSON Schema 2020-12
  keywords (`$schema`, `$defs`): berth's tools answer typed results with pydantic's schemas.
"""

import json
import subprocess

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel
from starlette.requests import Request

from app.auth.principal import Principal, Tier
from app.main import create_app
from app.mcp.endpoint import StatelessMCPEndpoint, allowed_hosts_for, allowed_origins_for, mcp_router
from app.mcp.tools import build_server, reads, tool
from tests.support.mcp_demo import node_interop, serve

pytestmark = pytest.mark.e2e

SCENARIOS = ("server-initialize", "ping", "tools-list", "tools-call-simple-text", "tools-call-error",
             "resources-list", "prompts-list", "dns-rebinding-protection")
LOOPBACK = ("http://127.0.0.1", "http://localhost")


class Text(BaseModel):
    text: str


def simple_text() -> Text:
    """Answer a short text."""
    return Text(text="This is a simple text response for testing.")


def failing() -> Text:
    """Fail as a user's mistake fails: a tool error."""
    raise ToolError("This tool intentionally returns an error for testing")


async def _anyone(request: Request) -> Principal:
    return Principal(kind="api_key", workspace_id="ws_conformance", subject_id="key_conformance", tier=Tier.admin,
                     credential_digest="")


@pytest.fixture(scope="module")
def url():
    server = build_server("berth-conformance", "0.0.1", [
        tool(simple_text, name="test_simple_text", tier=Tier.read, annotations=reads("Simple text")),
        tool(failing, name="test_error_handling", tier=Tier.read, annotations=reads("Error handling")),
    ])
    endpoint = StatelessMCPEndpoint(server, authenticate=_anyone, allowed_hosts=allowed_hosts_for(LOOPBACK),
                                    allowed_origins=allowed_origins_for(LOOPBACK))
    app = create_app()
    app.include_router(mcp_router(endpoint))
    with serve(app) as base_url:
        yield f"{base_url}/mcp"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_conformance_scenario_passes(url, scenario, tmp_path):
    suite = node_interop() / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    subprocess.run(["node", str(suite), "server", "--url", url, "--scenario", scenario, "-o", str(tmp_path)],
                   capture_output=True, text=True, timeout=120)
    (results,) = tmp_path.glob(f"server-{scenario}-*/checks.json")
    checks = json.loads(results.read_text())
    failed = [check for check in checks if check["status"] == "FAILURE"]
    assert not failed, failed
    assert any(check["status"] == "SUCCESS" for check in checks), checks
