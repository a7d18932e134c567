"""Health, readiness, version, policies, storage, capabilities, the OpenAPI document and docs UI."""

from app import composition
from tests.conftest import bearer, signup


def test_liveness_needs_no_auth(client):
    assert client.get("/health").json() == {"success": True, "status": "ok"}
    v1 = client.get("/v1/health").json()
    assert v1["status"] == "ok" and v1["mode"] == "local" and v1["version"]


def test_ready_reports_checks_and_warnings(client):
    response = client.get("/v1/ready")
    body = response.json()
    assert response.status_code == 200 and body["ready"] is True
    assert {c["name"] for c in body["checks"]} == {"table", "dead_letter_queue", "kms_key", "storage"}
    assert any("no runtime is online" in w for w in body["warnings"])


def test_ready_is_503_when_a_core_check_fails(client, monkeypatch):
    monkeypatch.setenv("BERTH_TABLE_NAME", "no-such-table")
    composition.reset()
    response = client.get("/v1/ready")
    assert response.status_code == 503
    table = next(c for c in response.json()["checks"] if c["name"] == "table")
    assert table["ok"] is False and "ResourceNotFound" in table["detail"]


def test_status_version_policies_storage(client, aws_resources):
    status = client.get("/status").json()
    assert status["table"]["ok"] and status["queues"]["dead_letter"]["ok"] and status["sandbox"]["driver"] == "none"
    version = client.get("/v1/version").json()
    assert version["name"] == "berth" and version["commit"]
    token = signup(client)["token"]
    policies = client.get("/v1/policies", headers=bearer(token)).json()
    assert policies["limits"]["max_ttl_seconds"] == aws_resources.max_ttl_seconds
    assert "curl" in policies["commands"]["deny"] and "node" in policies["commands"]["allow"]
    storage = client.get("/v1/system/storage", headers=bearer(token)).json()
    assert storage["disk"]["free_bytes"] > 0 and storage["data_dir"]
    capabilities = client.get("/v1/capabilities", headers=bearer(token)).json()
    assert capabilities["capabilities"] == [] and set(capabilities["runtimes"]) == {"node", "python", "ollama",
                                                                                      "vllm", "sglang"}


def test_openapi_describes_both_surfaces_and_docs_ui_is_self_hosted(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/auth/signup", "/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/cloud/runtimes/register",
                 "/api/auth/keys/generate", "/health", "/status"):
        assert path in paths
    page = client.get("/api-docs")
    assert page.status_code == 200 and "/api-docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    asset = client.get("/api-docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    assert client.get("/api-docs/assets/../../etc/passwd").status_code == 404


def test_importing_the_api_does_not_import_heavy_modules():
    import subprocess
    import sys

    probe = ("import sys, functions.api; heavy = [m for m in ('mcp.server.mcpserver', 'boto3', 'huggingface_hub', "
             "'argon2', 'asyncssh', 'moto') if m in sys.modules]; print(','.join(heavy))")
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert output == ""


def test_status_says_degraded_while_a_companion_needs_a_person(client):
    from app import companions

    assert client.get("/status").json()["service"]["status"] == "ok"
    failed = companions.CompanionReport(name="local_worker", state="failed", healthy=False,
                                        detail="the local worker exited with code 2, 3 times in a row; jobs will wait")
    companions.register("local_worker", lambda: failed)
    try:
        status = client.get("/status").json()
    finally:
        companions.unregister("local_worker")
    assert status["service"]["status"] == "degraded"
    assert status["companions"] == [failed.view()]
    assert f"local_worker: {failed.detail}" in status["warnings"]
    assert "companions" not in client.get("/status").json()


def test_storage_shows_each_own_runtimes_package_cache_as_its_heartbeat_reported_it(client):
    from tests.support.protocol_runtime import ProtocolRuntime

    token = signup(client)["token"]
    runtime = ProtocolRuntime.of_workspace(client, token)
    cache = {"entries": [{"registry_type": "pypi", "identifier": "mcp-server-time", "version": "2026.10.19",
                          "size_bytes": 4_200_000, "installed_at": 1.0, "last_used_at": 2.0, "in_use": True}],
             "total_bytes": 4_200_000, "max_bytes": 2_000_000_000, "free_disk_bytes": 9_000_000_000}
    runtime.heartbeat(package_cache=cache)
    listed = client.get("/v1/system/storage", headers=bearer(token)).json()["runtimes"]
    assert listed == [{"runtime_id": runtime.runtime_id, "name": runtime.registration.get("name", "runtime"),
                       "free_disk_bytes": 0, "package_cache": cache}]
    other = signup(client, email="bob@example.com", name="Bob")["token"]
    assert client.get("/v1/system/storage", headers=bearer(other)).json()["runtimes"] == []  # theirs alone

    too_many = {**cache, "entries": cache["entries"] * 201}
    assert runtime.post("/heartbeat", {"package_cache": too_many}).status_code == 422
