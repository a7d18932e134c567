"""Routes for integrations: `/api/integrations/client` (berth's `/mcp` as MCP clients configure it)."""

from typing import Any, TypedDict

from berth_cli.client.http import Http


class HeaderPair(TypedDict):
    name: str
    value: str


class LastSync(TypedDict):
    at: str
    syncs: int
    client: str | None


class ClientConfig(TypedDict):
    success: bool
    instance_id: str
    url: str
    header: HeaderPair
    mcpServers: dict[str, dict[str, Any]]
    servers: dict[str, dict[str, Any]]
    placeholders: dict[str, str]
    last_sync: LastSync | None


class SyncRecorded(TypedDict):
    success: bool
    instance_id: str
    last_sync: LastSync


class IntegrationsApi:
    def __init__(self, http: Http):
        self._http = http

    def client_config(self, instance_id: str | None = None) -> ClientConfig:
        return self._http.request("GET", "/api/integrations/client", params={"instanceId": instance_id})

    def sync(self, instance_id: str | None = None, client: str | None = None) -> SyncRecorded:
        return self._http.request("POST", "/api/integrations/client/sync", params={"instanceId": instance_id},
                                  json={"client": client} if client else None)
