"""`/api/integrations`: berth's `/mcp` as MCP clients configure it, per instance; syncs recorded
and audited; named aliases from configuration, not routes."""

import pytest

from app import composition
from tests.conftest import bearer, signup


@pytest.fixture
def keys(client):
    owner = signup(client)
    minted = {tier: client.post("/api/auth/keys/generate", headers=bearer(owner["token"]),
                                json={"name": tier, "tier": tier}).json()["key"] for tier in ("read", "standard")}
    return {tier: {"X-API-Key": key} for tier, key in minted.items()} | {"owner": owner}


def test_the_client_configuration_names_mcp_in_every_shape_and_no_secret(client, keys):
    config = client.get("/api/integrations/client", params={"instanceId": "acme-prod"}, headers=keys["read"])
    assert config.status_code == 200
    body = config.json()
    url = composition.services().settings.base_url + "/mcp"
    server = {"type": "http", "url": url, "headers": {"Authorization": "Bearer ${BERTH_API_KEY}"}}
    assert body["instance_id"] == "acme-prod" and body["url"] == url
    assert body["mcpServers"] == {"berth": server} and body["servers"] == {"berth": server}
    assert body["header"] == {"name": "Authorization", "value": "Bearer ${BERTH_API_KEY}"}
    assert "${BERTH_API_KEY}" in body["placeholders"] and body["last_sync"] is None
    assert "bak_" not in config.text


def test_a_sync_is_recorded_audited_and_shown_for_its_instance_only(client, keys):
    first = client.post("/api/integrations/client/sync", params={"instanceId": "acme-prod"}, headers=keys["standard"],
                        json={"client": "acme 2.1"})
    assert first.status_code == 200 and first.json()["last_sync"]["syncs"] == 1
    second = client.post("/api/integrations/client/sync", params={"instanceId": "acme-prod"}, headers=keys["standard"])
    assert second.json()["last_sync"] == {"at": second.json()["last_sync"]["at"], "syncs": 2, "client": "acme 2.1"}
    shown = client.get("/api/integrations/client", params={"instanceId": "acme-prod"}, headers=keys["read"]).json()
    assert shown["last_sync"] == second.json()["last_sync"]
    other = client.get("/api/integrations/client", params={"instanceId": "acme-test"}, headers=keys["read"]).json()
    assert other["last_sync"] is None
    workspace_id = keys["owner"]["user"]["workspace_id"]
    audit = composition.services().activity.audit_page(workspace_id, limit=10, cursor=None).items
    assert [(entry.action, entry.target) for entry in audit if entry.action == "integration.sync"] == [
        ("integration.sync", "acme-prod")] * 2
    assert client.post("/api/integrations/client/sync", headers=keys["read"]).status_code == 403


def test_an_alias_answers_for_its_configured_instance(client, keys):
    synced = client.post("/api/integrations/tessaract/sync", headers=keys["standard"], json={"client": "TessarAct"})
    assert synced.status_code == 200 and synced.json()["instance_id"] == "tessaract"
    config = client.get("/api/integrations/tessaract", headers=keys["read"]).json()
    assert config["instance_id"] == "tessaract" and config["last_sync"]["client"] == "TessarAct"
    canonical = client.get("/api/integrations/client", params={"instanceId": "tessaract"}, headers=keys["read"])
    assert canonical.json() == config
    unknown = client.get("/api/integrations/nobody", headers=keys["read"])
    assert unknown.status_code == 404 and "aliases configured: tessaract" in unknown.json()["error"]


def test_aliases_come_from_the_settings(client, keys, monkeypatch):
    monkeypatch.setenv("BERTH_INTEGRATION_ALIASES", '{"acme": "acme-prod"}')
    composition.reset()
    assert client.get("/api/integrations/acme", headers=keys["read"]).json()["instance_id"] == "acme-prod"
    assert client.get("/api/integrations/tessaract", headers=keys["read"]).status_code == 404


@pytest.mark.parametrize("instance", ["", "a b", "x" * 65, "../etc"])
def test_a_malformed_instance_id_is_refused(client, keys, instance):
    assert client.get("/api/integrations/client", params={"instanceId": instance},
                      headers=keys["read"]).status_code == 422
