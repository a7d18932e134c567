"""Views of the integration routes: berth's `/mcp` in the shapes MCP clients read."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain.integrations import IntegrationSync

SERVER_NAME = "berth"
# Clients fill this in from their environment (Claude Code, Cursor with `${env:...}`); berth never
# has the key to put there, and `berth mcp config --with-key` fills it from the CLI's profile.
API_KEY_PLACEHOLDER = "${BERTH_API_KEY}"


class HeaderPair(BaseModel):
    name: str
    value: str


class LastSync(BaseModel):
    at: str
    syncs: int = Field(description="how many syncs the instance has reported")
    client: str | None = None

    @classmethod
    def of(cls, sync: IntegrationSync | None) -> "LastSync | None":
        return cls(at=sync.last_sync_at, syncs=sync.syncs, client=sync.client) if sync else None


class ClientConfig(BaseModel):
    """The canonical MCP client configuration for berth's `/mcp`."""

    model_config = ConfigDict(populate_by_name=True)

    success: bool = True
    instance_id: str
    url: str = Field(description="berth's MCP endpoint (streamable HTTP)")
    header: HeaderPair = Field(description="the one header it needs: an API key of the workspace, whose tier "
                                           "decides the tools")
    mcp_servers: dict[str, dict[str, Any]] = Field(
        alias="mcpServers", description="the `mcpServers` map (Claude Desktop and Code, Cursor, Windsurf, ...)")
    servers: dict[str, dict[str, Any]] = Field(description="VS Code's `servers` map (.vscode/mcp.json)")
    placeholders: dict[str, str] = Field(description="what to put in place of each placeholder")
    last_sync: LastSync | None = Field(description="the last sync this instance reported")

    @classmethod
    def of(cls, instance_id: str, url: str, sync: IntegrationSync | None) -> "ClientConfig":
        header = HeaderPair(name="Authorization", value=f"Bearer {API_KEY_PLACEHOLDER}")
        headers = {header.name: header.value}
        return cls(instance_id=instance_id, url=url, header=header,
                   mcp_servers={SERVER_NAME: {"type": "http", "url": url, "headers": headers}},
                   servers={SERVER_NAME: {"type": "http", "url": url, "headers": headers}},
                   placeholders={API_KEY_PLACEHOLDER: "an API key of this workspace (POST /api/auth/keys/generate); "
                                                      "read lists, standard also creates and calls, admin does all"},
                   last_sync=LastSync.of(sync))


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: str | None = Field(default=None, min_length=1, max_length=200,
                               description="what the instance is, e.g. its name and version")


class SyncRecorded(BaseModel):
    success: bool = True
    instance_id: str
    last_sync: LastSync
