"""Worker-side sandbox runtime: one MCP server per session (`session.SandboxSession`), confined
by a SandboxPolicy (`app.contract.policy.SandboxPolicy`, which arrives with each sandbox job).

Nothing is imported here: `isolation` and `network` are stdlib-only, so the worker can report
its sandbox drivers without loading the `mcp` SDK that `session` needs."""
