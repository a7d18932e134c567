"""Worker-side sandbox runtime: one MCP server per session, confined by a SandboxPolicy."""

from workers.sandbox.isolation import bubblewrap_available
from workers.sandbox.policy import SandboxPolicy, SandboxRejected, check_command
from workers.sandbox.session import SandboxNotRunning, SandboxSession, SandboxStartFailed

__all__ = [
    "SandboxNotRunning",
    "SandboxPolicy",
    "SandboxRejected",
    "SandboxSession",
    "SandboxStartFailed",
    "bubblewrap_available",
    "check_command",
]
