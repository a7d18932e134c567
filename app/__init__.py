"""berth: serverless control plane for MCP tool sandboxes and model serving."""

__version__ = "0.3.0"
