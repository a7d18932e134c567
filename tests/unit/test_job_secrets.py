"""A job's secrets (a sandbox's env values) through the HTTP API on moto: kept sealed beside the
payload, sealed again for the runtime each dispatch goes to, shown by name only, never sent to a
runtime without a runtime key, and gone from the item once the job ends."""

import json

import pytest

from app import composition
from app.contract.messages import QueueEnvelope
from app.contract.sealing import RuntimeKeys, SealedValueRejected, unseal
from app.store import keys
from tests.conftest import bearer, signup

SECRET = "s3cret-value-42"


def _register(client, session: str) -> dict:
    join = client.post("/v1/cloud/join-tokens", headers=bearer(session), json={}).json()["token"]
    response = client.post("/v1/cloud/runtimes/register", json={
        "join_token": join, "capabilities": ["mcp.test"], "max_concurrent_jobs": 4, "queue_mode": "lease"})
    assert response.status_code == 201, response.text
    return response.json()


def _start(client, session: str, **body) -> str:
    response = client.post("/v1/sandbox/sessions", headers=bearer(session),
                           json={"start_command": "python3 server.py", **body})
    assert response.status_code == 202, response.text
    return response.json()["session_id"]


def _bodies(queue_url: str) -> list[str]:
    sqs = composition.services().aws.client("sqs")
    return [m["Body"] for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])]


def _item(store, session_workspace: str, job_id: str) -> dict:
    return store.table.get(*keys.job(session_workspace, job_id))


def test_env_values_are_sealed_at_rest_and_for_the_runtime_alone(client, store):
    session = signup(client)["token"]
    runtime = _register(client, session)
    job_id = _start(client, session, env={"TOKEN": SECRET, "MODE": "fast"})

    assert SECRET not in json.dumps(store.table.scan_all(), default=str)
    item = _item(store, runtime["workspace_id"], job_id)
    assert "env" not in item["payload"] and item["secrets"].startswith("e1.")
    assert item["secret_names"] == {"env": ["MODE", "TOKEN"]}

    (body,) = _bodies(runtime["jobs_queue_url"])
    assert SECRET not in body
    message = QueueEnvelope.model_validate_json(body).message
    sealing = RuntimeKeys.derive(runtime["runtime_key"]).sealing
    assert unseal(sealing, message.secrets, job_id) == {"env": {"TOKEN": SECRET, "MODE": "fast"}}
    with pytest.raises(SealedValueRejected):
        unseal(sealing, message.secrets, "job_another")

    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(session)).json()
    assert job["payload"]["env"] == {"MODE": "***", "TOKEN": "***"}
    sandbox = client.get(f"/v1/sandbox/sessions/{job_id}", headers=bearer(session)).json()
    assert sandbox["env"] == ["MODE", "TOKEN"]


def test_a_sandbox_without_env_carries_no_secrets(client, store):
    session = signup(client)["token"]
    runtime = _register(client, session)
    job_id = _start(client, session)
    assert "secrets" not in _item(store, runtime["workspace_id"], job_id)
    (body,) = _bodies(runtime["jobs_queue_url"])
    assert QueueEnvelope.model_validate_json(body).message.secrets is None


def test_a_runtime_without_a_runtime_key_is_never_sent_secrets(client, store):
    session = signup(client)["token"]
    legacy = _register(client, session)
    store.table.update(*keys.runtime(legacy["workspace_id"], legacy["runtime_id"]), remove=("sealed_key",))
    store.runtimes.forget(legacy["workspace_id"])
    with_env = _start(client, session, env={"TOKEN": SECRET})
    without = _start(client, session)
    assert client.get(f"/v1/jobs/{with_env}", headers=bearer(session)).json()["runtime_id"] is None  # it waits
    assert client.get(f"/v1/jobs/{without}", headers=bearer(session)).json()["runtime_id"] == legacy["runtime_id"]

    keyed = _register(client, session)  # a runtime that can receive them: the waiting job goes there
    assert client.get(f"/v1/jobs/{with_env}", headers=bearer(session)).json()["runtime_id"] == keyed["runtime_id"]


def test_a_redispatch_seals_for_the_new_runtime(client, store):
    session = signup(client)["token"]
    first = _register(client, session)
    job_id = _start(client, session, env={"TOKEN": SECRET})
    second = _register(client, session)
    assert client.delete(f"/v1/cloud/runtimes/{first['runtime_id']}", headers=bearer(session)).status_code == 200

    (body,) = _bodies(second["jobs_queue_url"])
    message = QueueEnvelope.model_validate_json(body).message
    assert message.job_id == job_id and message.dispatch == 2
    assert unseal(RuntimeKeys.derive(second["runtime_key"]).sealing, message.secrets, job_id) == {
        "env": {"TOKEN": SECRET}}
    with pytest.raises(SealedValueRejected):
        unseal(RuntimeKeys.derive(first["runtime_key"]).sealing, message.secrets, job_id)


def test_a_patched_env_is_sealed_again_and_an_ended_job_keeps_no_secrets(client, store):
    session = signup(client)["token"]
    runtime = _register(client, session)
    job_id = _start(client, session, env={"TOKEN": SECRET})
    patched = client.patch(f"/api/sandboxes/{job_id}", headers=bearer(session), json={"env": {"NEW": "n3w-value"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["env"] == ["NEW"]
    item = _item(store, runtime["workspace_id"], job_id)
    dumped = json.dumps(item)
    assert "n3w-value" not in dumped and SECRET not in dumped
    job = store.jobs.get(runtime["workspace_id"], job_id)
    assert composition.services().job_secrets.open(job) == {"env": {"NEW": "n3w-value"}}

    assert client.delete(f"/v1/sandbox/sessions/{job_id}", headers=bearer(session)).json()["status"] == "cancelled"
    ended = _item(store, runtime["workspace_id"], job_id)
    assert "secrets" not in ended and ended["secret_names"] == {"env": ["NEW"]}
