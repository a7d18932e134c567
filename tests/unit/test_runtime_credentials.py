"""A runtime's credentials have a lifecycle, through the HTTP API on moto: a runtime key issued once
and kept only sealed, join tokens and runtimes that can be deleted (audited, and only within the
workspace), the shared fleet's queues named apart."""

import json

import pytest

from app import composition
from app.contract.messages import QueueEnvelope
from app.contract.sealing import RuntimeKeys
from app.domain.runtimes import SHARED_WORKSPACE
from app.ids import hash_secret
from app.store import keys
from tests.conftest import bearer, signup


def _join(client, session: str, **body) -> str:
    response = client.post("/v1/cloud/join-tokens", headers=bearer(session), json=body)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def _register(client, join_token: str, capabilities=("agent.run",), slots: int = 2) -> dict:
    response = client.post("/v1/cloud/runtimes/register", json={
        "join_token": join_token, "capabilities": list(capabilities), "max_concurrent_jobs": slots,
        "queue_mode": "lease"})
    assert response.status_code == 201, response.text
    return response.json()


def _sqs():
    return composition.services().aws.client("sqs")


def _queue_names() -> set[str]:
    return {url.rsplit("/", 1)[1] for url in _sqs().list_queues().get("QueueUrls", [])}


def _audit(client, session: str) -> list[str]:
    return [event["action"] for event in client.get("/v1/cloud/audit", headers=bearer(session)).json()["events"]]


# --- runtime keys ------------------------------------------------------------------------------


def test_registration_returns_a_runtime_key_once_and_the_table_keeps_it_only_sealed(client, store):
    session = signup(client)["token"]
    runtime = _register(client, _join(client, session))
    key = runtime["runtime_key"]
    assert key.startswith("brk_")
    dumped = json.dumps(store.table.scan_all(), default=str)
    assert key not in dumped
    assert RuntimeKeys.derive(key).signing not in dumped  # nothing in the table signs for the runtime
    stored = store.runtimes.get(runtime["workspace_id"], runtime["runtime_id"])
    keyring = composition.services().keyring
    assert keyring.signing_key(stored) == RuntimeKeys.derive(key).signing != stored.token_digest
    listed = client.get("/v1/cloud/runtimes", headers=bearer(session)).json()["runtimes"]
    assert "brk_" not in json.dumps(listed) and "sealed_key" not in listed[0]


def test_a_runtime_registered_before_keys_is_signed_for_with_its_token_digest(client, store):
    """Until it registers again (the worker keeps its saved registration), the API keeps signing
    with what that worker verifies."""
    session = signup(client)["token"]
    runtime = _register(client, _join(client, session))
    store.table.update(*keys.runtime(runtime["workspace_id"], runtime["runtime_id"]), remove=("sealed_key",))
    legacy = store.runtimes.get(runtime["workspace_id"], runtime["runtime_id"])
    assert composition.services().keyring.signing_key(legacy) == hash_secret(runtime["runtime_token"])


# --- queues ------------------------------------------------------------------------------------


def test_the_shared_fleets_queues_are_named_apart(client, store):
    session = signup(client)["token"]
    own = _register(client, _join(client, session))
    system = composition.services()
    from app.auth.principal import Principal, Tier

    platform = Principal(kind="system", workspace_id="ws_platform", subject_id="test", tier=Tier.admin,
                         credential_digest="", operator=True)
    shared_secret, _ = system.runtimes.mint_join_token(platform, name="fleet", uses=1, ttl_seconds=600, shared=True,
                                                       labels={})
    shared = _register(client, shared_secret)
    assert own["jobs_queue_url"].endswith(f"berth-rt-{own['runtime_id']}")
    assert own["control_queue_url"].endswith(f"berth-rt-{own['runtime_id']}-control")
    assert shared["workspace_id"] == SHARED_WORKSPACE
    assert shared["jobs_queue_url"].endswith(f"berth-shared-rt-{shared['runtime_id']}")
    assert shared["control_queue_url"].endswith(f"berth-shared-rt-{shared['runtime_id']}-control")


# --- join tokens -------------------------------------------------------------------------------


def test_a_deleted_join_token_registers_nothing_at_once(client):
    session = signup(client)["token"]
    minted = client.post("/v1/cloud/join-tokens", headers=bearer(session), json={"uses": 5}).json()
    token_id = minted["join_token"]["token_id"]
    _register(client, minted["token"])

    other = signup(client, email="eve@example.com")["token"]
    foreign = client.delete(f"/v1/cloud/join-tokens/{token_id}", headers=bearer(other))
    assert foreign.status_code == 404 and foreign.json()["error"] == f"no join token {token_id}"

    deleted = client.delete(f"/v1/cloud/join-tokens/{token_id}", headers=bearer(session))
    assert deleted.status_code == 200 and deleted.json() == {"ok": True, "token_id": token_id}
    refused = client.post("/v1/cloud/runtimes/register", json={"join_token": minted["token"]})
    assert refused.status_code == 401
    assert client.get("/v1/cloud/join-tokens", headers=bearer(session)).json()["join_tokens"] == []
    assert client.delete(f"/v1/cloud/join-tokens/{token_id}", headers=bearer(session)).status_code == 404
    assert "join_token.delete" in _audit(client, session)


def test_only_admins_delete_join_tokens_and_runtimes(client):
    session = signup(client)["token"]
    standard = client.post("/api/auth/keys/generate", headers=bearer(session),
                           json={"name": "s", "tier": "standard"}).json()["key"]
    for path in ("/v1/cloud/join-tokens/jt_x", "/v1/cloud/runtimes/rt_x"):
        assert client.delete(path, headers=bearer(standard)).status_code == 403


# --- runtimes ----------------------------------------------------------------------------------


def _post_job(client, session: str) -> str:
    response = client.post("/v1/jobs", headers=bearer(session), json={"type": "agent.run", "payload": {"agent": "a"}})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _messages(queue_url: str) -> list:
    received = _sqs().receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [QueueEnvelope.model_validate_json(m["Body"]).message for m in received.get("Messages", [])]


def test_deleting_a_runtime_revokes_it_removes_its_queues_and_moves_its_jobs(client, store):
    session = signup(client)["token"]
    doomed = _register(client, _join(client, session))
    job_id = _post_job(client, session)
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(session)).json()["runtime_id"] == doomed["runtime_id"]
    spare = _register(client, _join(client, session))

    other = signup(client, email="eve@example.com")["token"]
    foreign = client.delete(f"/v1/cloud/runtimes/{doomed['runtime_id']}", headers=bearer(other))
    assert foreign.status_code == 404 and foreign.json()["error"] == f"no runtime {doomed['runtime_id']}"

    deleted = client.delete(f"/v1/cloud/runtimes/{doomed['runtime_id']}", headers=bearer(session))
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"ok": True, "runtime_id": doomed["runtime_id"], "jobs_requeued": 1, "jobs_ended": 0}

    beat = client.post("/v1/cloud/runtimes/heartbeat", headers=bearer(doomed["runtime_token"]), json={})
    assert beat.status_code == 401
    assert f"berth-rt-{doomed['runtime_id']}" not in _queue_names()
    assert store.runtimes.get(doomed["workspace_id"], doomed["runtime_id"]) is None  # its sealed key with it
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(session)).json()
    assert job["status"] == "queued" and job["runtime_id"] == spare["runtime_id"]
    assert [m.job_id for m in _messages(spare["jobs_queue_url"])] == [job_id]
    listed = client.get("/v1/cloud/runtimes", headers=bearer(session)).json()["runtimes"]
    assert [r["runtime_id"] for r in listed] == [spare["runtime_id"]]
    assert "runtime.delete" in _audit(client, session)


def test_a_job_placed_from_a_listing_read_before_the_deletion_goes_elsewhere(client, store):
    """A placement that raced the deletion fails its slot's condition and tries the next runtime."""
    session = signup(client)["token"]
    doomed = _register(client, _join(client, session))  # listed first: the first candidate of equals
    spare = _register(client, _join(client, session))
    cached = store.runtimes.listed(doomed["workspace_id"], fresh=True)  # the listing dispatch will use
    assert [r.runtime_id for r in cached] == [doomed["runtime_id"], spare["runtime_id"]]
    store.table.transact([store.runtimes.begin_removal(cached[0], "now")])  # the deletion begins elsewhere
    job_id = _post_job(client, session)
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(session)).json()["runtime_id"] == spare["runtime_id"]


def test_a_shared_runtime_is_deleted_by_the_operator_only(client, store):
    from app.auth.principal import Principal, Tier

    platform = Principal(kind="system", workspace_id="ws_platform", subject_id="test", tier=Tier.admin,
                         credential_digest="", operator=True)
    secret, _ = composition.services().runtimes.mint_join_token(platform, name="fleet", uses=1, ttl_seconds=600,
                                                                shared=True, labels={})
    shared = _register(client, secret)
    session = signup(client)["token"]
    refused = client.delete(f"/v1/cloud/runtimes/{shared['runtime_id']}", headers=bearer(session))
    assert refused.status_code == 403
    assert refused.json()["error"] == "only the platform operator can delete shared runtimes"
    composition.services().accounts.set_operator_grant("ada@example.com", "granted")
    deleted = client.delete(f"/v1/cloud/runtimes/{shared['runtime_id']}", headers=bearer(session))
    assert deleted.status_code == 200
    assert f"berth-shared-rt-{shared['runtime_id']}" not in _queue_names()


@pytest.mark.parametrize("queue", ["jobs", "control"])
def test_a_deleted_runtimes_lease_is_refused(client, queue):
    session = signup(client)["token"]
    runtime = _register(client, _join(client, session))
    client.delete(f"/v1/cloud/runtimes/{runtime['runtime_id']}", headers=bearer(session))
    leased = client.post("/v1/cloud/runtimes/lease", headers=bearer(runtime["runtime_token"]),
                         json={"queue": queue, "wait_seconds": 0})
    assert leased.status_code == 401
