"""Integrations: MCP clients configured to use berth's `/mcp` for a named instance of an
integrating product, and the syncs they report."""

from dataclasses import dataclass

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
DEFAULT_INSTANCE = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrationSync:
    """The last sync an instance reported, and how many it has."""

    workspace_id: str
    instance_id: str
    last_sync_at: str
    syncs: int = 0
    last_actor: str = ""
    client: str | None = None  # what the instance said it is (name and version)
