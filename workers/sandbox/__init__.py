"""Worker-side sandbox runtime: one MCP server per session, confined by a SandboxPolicy
(`app.contract.policy.SandboxPolicy`, which arrives with each sandbox job)."""

from workers.sandbox.isolation import bubblewrap_available
from workers.sandbox.session import SandboxNotRunning, SandboxSession, SandboxStartFailed

__all__ = [
    "SandboxNotRunning",
    "SandboxSession",
    "SandboxStartFailed",
    "bubblewrap_available",
]
