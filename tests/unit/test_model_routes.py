"""The model routes on moto with the local hub, a runtime played by the test through the runtime
protocol: credentials sealed, attach's checks, the job it creates, progress moving the installation
(forwards only), a job's end failing it, S3 and local sources, and the OpenAI endpoint's errors."""

import json

import pytest

from app import composition
from app.contract.messages import QueueEnvelope
from app.services.secrets import SecretUnreadable
from tests.conftest import bearer, signup
from tests.support.hub import DEMO_GATED, DEMO_LLAMA, make_demo_hub, make_safetensors


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as running:
        yield running


@pytest.fixture
def client(aws_resources, hub, monkeypatch):
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setenv("BERTH_HF_ENDPOINT", hub.url)
    composition.reset()
    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def token(client):
    return signup(client)["token"]


def _workspace(client, token: str) -> str:
    return client.get("/v1/auth/me", headers=bearer(token)).json()["user"]["workspace_id"]


def _runtime(client, token: str, *, capabilities=("model.pull", "model.preload", "model.attach"), vllm=True,
             gpus=(), free_disk=10**12) -> dict:
    join = client.post("/v1/cloud/join-tokens", headers=bearer(token), json={}).json()
    response = client.post("/v1/cloud/runtimes/register", json={
        "join_token": join["token"], "capabilities": list(capabilities), "runtimes": {"vllm": vllm},
        "gpus": [{"name": "H100", "memory_mb": 81559} for _ in gpus], "free_disk_bytes": free_disk,
        "max_concurrent_jobs": 4, "queue_mode": "sqs"})
    assert response.status_code == 201, response.text
    return response.json()


def _profile(client, token: str, repo: str = DEMO_LLAMA, **fields) -> dict:
    response = client.post("/v1/model-profiles", headers=bearer(token), json={"external_id": repo, **fields})
    assert response.status_code == 201, response.text
    return response.json()["profile"]


def _attach(client, token: str, profile_id: str, runtime_id: str, **body):
    return client.post(f"/v1/model-profiles/{profile_id}/attach", headers=bearer(token),
                       json={"runtimeId": runtime_id, **body})


def test_a_provider_token_is_stored_sealed_for_its_workspace_and_shown_only_as_a_hint(client, token):
    secret = "hf_abcdefghijklmnopqrstuvwxyz0123"
    created = client.post("/v1/cloud/providers", headers=bearer(token), json={"token": secret, "name": "mine"})
    assert created.status_code == 201 and created.json()["provider"]["hint"] == "hf_...0123"
    listed = client.get("/v1/cloud/providers", headers=bearer(token))
    assert secret not in listed.text and listed.json()["providers"][0]["name"] == "mine"

    store = composition.services().store
    items = store.table.scan_all()
    assert not [item for item in items if secret in json.dumps(item, default=str)]
    [credential] = [item for item in items if item["sk"] == "PROVIDER#huggingface"]
    providers = composition.services().providers
    assert providers.open(_workspace(client, token), credential["sealed"]) == secret
    with pytest.raises(SecretUnreadable):
        providers.open("ws_someone_else", credential["sealed"])
    assert client.post("/v1/cloud/providers", headers=bearer(token), json={"token": "has space inside"}
                       ).status_code == 422


def test_attach_creates_a_pinned_long_lived_job_and_its_events_move_the_installation_forwards_only(client, token, hub):
    runtime = _runtime(client, token)
    profile = _profile(client, token)
    answer = _attach(client, token, profile["id"], runtime["runtime_id"], maxModelLen=2048)
    assert answer.status_code == 202, answer.text
    attached = answer.json()
    installation_id, job_id = attached["installation_id"], attached["job_id"]
    assert attached["installation"]["status"] == "queued" and attached["installation"]["progress"] == 0

    sqs = composition.services().aws.client("sqs")
    [raw] = sqs.receive_message(QueueUrl=runtime["jobs_queue_url"])["Messages"]
    message = QueueEnvelope.model_validate_json(raw["Body"]).message
    assert message.type.value == "model.attach" and message.secrets is None  # a public repo needs no token
    assert message.payload["installation_id"] == installation_id
    assert message.payload["revision"] == hub.head_sha(DEMO_LLAMA)  # pinned when the profile was made
    assert message.payload["engine"]["max_model_len"] == 2048
    settings = composition.services().settings
    assert message.expires_at - composition.services().clock.now() > settings.max_ttl_seconds

    claim = client.post(f"/v1/cloud/runtimes/jobs/{message.workspace_id}/{job_id}/claim",
                        headers=bearer(runtime["runtime_token"]),
                        json={"dispatch": 1, "worker_id": "w1", "start_seq": message.start_seq}).json()
    events_path = f"/v1/cloud/runtimes/jobs/{message.workspace_id}/{job_id}/events"

    def post(*events):
        batch = {"claim_id": claim["claim_id"], "events": [
            {"seq": seq, "step": status, "status": "running", "message": status,
             "data": {"installation_status": status, "progress": progress, "installation_id": installation_id,
                      **extra}} for seq, status, progress, extra in events]}
        response = client.post(events_path, headers=bearer(runtime["runtime_token"]), json=batch)
        assert response.status_code == 200, response.text

    def current() -> dict:
        return client.get(f"/v1/model-installations/{installation_id}", headers=bearer(token)).json()["installation"]

    post((4, "checking", 0, {}), (5, "downloading", 45, {"bytes_done": 500, "bytes_total": 1000}))
    assert (current()["status"], current()["progress"], current()["bytes_done"]) == ("downloading", 45, 500)
    post((3, "queued", 0, {}))  # a batch that arrived late: older than what the installation shows
    assert current()["status"] == "downloading"
    post((6, "ready", 100, {"endpoint": "http://127.0.0.1:9/v1", "local_path": "/cache/snap"}))
    assert (current()["status"], current()["progress"], current()["local_path"]) == ("ready", 100, "/cache/snap")
    models = client.get("/openai/v1/models", headers=bearer(token)).json()
    assert [model["id"] for model in models["data"]] == [DEMO_LLAMA]

    job = composition.services().store.jobs.get(message.workspace_id, job_id)
    assert composition.services().lifecycle.expire(job)
    ended = current()
    assert (ended["status"], ended["failure"]) == ("failed", "expired") and ended["progress"] == 100
    assert client.get("/openai/v1/models", headers=bearer(token)).json()["data"] == []


def test_attach_refuses_what_cannot_work_saying_why(client, token):
    profile = _profile(client, token)

    def refusal(runtime: dict, **body) -> str:
        response = _attach(client, token, profile["id"], runtime["runtime_id"], **body)
        assert response.status_code == 409, response.text
        return response.json()["error"]

    assert "does not run model jobs" in refusal(_runtime(client, token, capabilities=("agent.run",)))
    assert "cannot start vllm" in refusal(_runtime(client, token, vllm=False))
    assert "has 1 GPU(s)" in refusal(_runtime(client, token, gpus=("0",)), tensorParallelSize=2)
    assert "of disk free" in refusal(_runtime(client, token, free_disk=1000))
    runtime = _runtime(client, token)
    assert "installed with pull_from_source" in refusal(runtime, installMode="mount_volume")
    gated = _profile(client, token, DEMO_GATED)
    assert gated["status"] == "gated" and gated["access"] == "needs_credential"
    response = _attach(client, token, gated["id"], runtime["runtime_id"])
    assert response.status_code == 409 and "store a Hugging Face credential" in response.json()["error"]
    invalid = _attach(client, token, profile["id"], runtime["runtime_id"], gpuMemoryUtilization=2)
    assert invalid.status_code == 422


def test_a_local_directory_is_attached_as_a_mounted_volume(client, token):
    runtime = _runtime(client, token)
    created = client.post("/v1/model-profiles", headers=bearer(token),
                          json={"source_type": "local_path", "external_id": "/models/llama-3b"}).json()["profile"]
    assert created["engines"]["vllm"]["servable"] is None and created["status"] == "profile_only"
    answer = _attach(client, token, created["id"], runtime["runtime_id"])
    assert answer.status_code == 202, answer.text
    assert answer.json()["installation"]["install_mode"] == "mount_volume"
    [raw] = composition.services().aws.client("sqs").receive_message(QueueUrl=runtime["jobs_queue_url"])["Messages"]
    payload = QueueEnvelope.model_validate_json(raw["Body"]).message.payload
    assert (payload["install_mode"], payload["local_path"]) == ("mount_volume", "/models/llama-3b")
    relative = client.post("/v1/model-sources/resolve", headers=bearer(token),
                           json={"sourceType": "local_path", "path": "models/x"})
    assert relative.status_code == 422


def test_an_s3_prefix_resolves_from_its_listing_and_config(client, token):
    s3 = composition.services().aws.client("s3")
    s3.create_bucket(Bucket="weights")
    s3.put_object(Bucket="weights", Key="llama/config.json",
                  Body=json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    weights = make_safetensors({"w": [8, 8]})
    s3.put_object(Bucket="weights", Key="llama/model.safetensors", Body=weights)

    preview = client.post("/v1/model-sources/resolve", headers=bearer(token),
                          json={"sourceType": "s3", "sourceUri": "s3://weights/llama"})
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["architecture"], body["weight_bytes"], body["display_name"]) == ("LlamaForCausalLM", len(weights),
                                                                                  "llama")
    assert body["engines"]["vllm"]["servable"] is True and "local_path" in body["engines"]["vllm"]["reason"]
    missing = client.post("/v1/model-sources/resolve", headers=bearer(token),
                          json={"sourceType": "s3", "sourceUri": "s3://no-such-bucket/x"})
    assert missing.status_code == 404
    not_s3 = client.post("/v1/model-sources/resolve", headers=bearer(token),
                         json={"sourceType": "s3", "sourceUri": "https://weights/llama"})
    assert not_s3.status_code == 422


def test_the_openai_endpoint_answers_errors_in_openais_shape(client, token):
    not_json = client.post("/openai/v1/chat/completions", headers=bearer(token), content=b"{not json")
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error" and not_json.json()["request_id"]
    no_model = client.post("/openai/v1/embeddings", headers=bearer(token), json={"input": "x"})
    assert no_model.status_code == 400 and "`model` is required" in no_model.json()["error"]["message"]
    unknown = client.post("/openai/v1/completions", headers=bearer(token), json={"model": "a/b", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    anonymous = client.get("/openai/v1/models")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    elsewhere = client.get("/v1/model-installations/minst_nope", headers=bearer(token))
    assert elsewhere.status_code == 404 and elsewhere.json()["success"] is False  # berth's shape outside /openai
