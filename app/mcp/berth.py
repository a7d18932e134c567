"""berth's own MCP server: every family of tools, under the tier gate."""

from mcp.server.mcpserver import MCPServer

from app import __version__
from app.mcp.families import containers, infra_ssh, sandboxes, service, shared_tools
from app.mcp.tools import TieredTool, build_server

INSTRUCTIONS = (
    "berth runs MCP servers in sandboxes on its runtimes. create_sandbox starts one (poll list_sandboxes, or "
    "pass wait_seconds), call_sandbox_tool calls its tools. Your API key's tier decides what you may call: "
    "read lists and inspects, standard also creates and calls, admin also stops and removes."
)


def berth_tools() -> list[TieredTool]:
    return [*containers.tools(), *shared_tools.tools(), *sandboxes.tools(), *service.tools(), *infra_ssh.tools()]


def berth_server() -> MCPServer:
    return build_server("berth", __version__, berth_tools(), instructions=INSTRUCTIONS)
