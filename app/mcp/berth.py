"""berth's own MCP server: every family of tools, under the tier gate."""

from mcp.server.mcpserver import MCPServer

from app import __version__
from app.mcp.families import containers, infra_ssh, installations, marketplace, sandboxes, service, shared_tools
from app.mcp.tools import TieredTool, build_server

INSTRUCTIONS = (
    "berth runs MCP servers in sandboxes on its runtimes. create_sandbox starts one (poll list_sandboxes, or "
    "pass wait_seconds), call_sandbox_tool calls its tools. search_marketplace and get_tool_details find servers "
    "in the marketplace; install_tool installs one (list_installations lists them), call_installed_tool calls "
    "its tools, starting its server on demand. Your API key's tier decides what you may call: read lists and "
    "inspects, standard also creates, installs and calls, admin also stops and removes."
)


def berth_tools() -> list[TieredTool]:
    return [*containers.tools(), *marketplace.tools(), *installations.tools(), *shared_tools.tools(),
            *sandboxes.tools(), *service.tools(), *infra_ssh.tools()]


def berth_server() -> MCPServer:
    return build_server("berth", __version__, berth_tools(), instructions=INSTRUCTIONS)
