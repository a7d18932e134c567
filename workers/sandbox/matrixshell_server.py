"""MatrixShell: the shell MCP server the worker copies into a workspace's shell sandbox.

It runs inside the sandbox (bubblewrap and rlimits, like any server) and offers one tool, `exec`,
which runs a shell line in the sandbox's home and returns stdout, stderr and the exit code. The
policy's deny-list arrives in BERTH_SHELL_DENYLIST and is enforced here too, so a direct
tools/call cannot get around the API's check.
"""

import json
import os
import subprocess

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

OUTPUT_LIMIT = 64_000
DENYLIST = json.loads(os.environ.get("BERTH_SHELL_DENYLIST", "[]"))

server = MCPServer("matrixshell")


class ExecResult(BaseModel):
    stdout: str
    stderr: str
    exit_code: int


@server.tool()
def exec(command: str, timeout_seconds: float = 15.0) -> ExecResult:
    """Run a shell command in the sandbox; returns stdout, stderr and exit_code."""
    for denied in DENYLIST:
        if denied and denied in command:
            raise ToolError(f"command denied by policy: contains {denied!r}")
    try:
        completed = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                                   timeout=min(timeout_seconds, 20.0), cwd=os.environ.get("HOME", "."))
    except subprocess.TimeoutExpired as error:
        partial = error.stdout if isinstance(error.stdout, str) else ""
        return ExecResult(stdout=partial[-OUTPUT_LIMIT:], stderr=f"timed out after {error.timeout:g} s", exit_code=124)
    return ExecResult(stdout=completed.stdout[-OUTPUT_LIMIT:], stderr=completed.stderr[-OUTPUT_LIMIT:],
                      exit_code=completed.returncode)


if __name__ == "__main__":
    server.run()
