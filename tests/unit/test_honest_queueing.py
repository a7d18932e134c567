"""A job no runtime can run says so: the 202 and the job name what it waits for, its `queued`
event too, and a type no registered runtime offers is refused with 409 unless the client waits."""

from app import composition
from tests.conftest import bearer, signup

PULL = {"type": "model.pull", "payload": {"model": "org/model"}}


def _register(client, token: str, capabilities: list[str]) -> str:
    join = client.post("/v1/cloud/join-tokens", headers=bearer(token), json={}).json()
    response = client.post("/v1/cloud/runtimes/register", json={
        "join_token": join["token"], "capabilities": capabilities, "queue_mode": "lease"})
    assert response.status_code == 201, response.text
    return response.json()["runtime_id"]


def _take_offline(workspace_id: str, runtime_id: str) -> None:
    store = composition.services().store
    assert store.runtimes.mark_offline(store.runtimes.get(workspace_id, runtime_id))
    store.runtimes.forget(workspace_id)


def test_a_type_no_registered_runtime_offers_is_refused_and_nothing_is_stored(client):
    token = signup(client)["token"]
    refused = client.post("/v1/jobs", headers=bearer(token), json=PULL)
    assert refused.status_code == 409
    assert "no registered runtime offers model.pull" in refused.json()["error"]
    assert '"wait": true' in refused.json()["error"]
    assert client.get("/v1/jobs", headers=bearer(token)).json()["jobs"] == []


def test_asked_to_wait_it_queues_and_says_what_for(client):
    token = signup(client)["token"]
    accepted = client.post("/v1/jobs", headers=bearer(token), json={**PULL, "wait": True})
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["waiting_for"] == {"capability": "model.pull", "reason": "no_runtime_registered",
                                   "message": body["warnings"][0]}
    job = client.get(f"/v1/jobs/{body['job_id']}", headers=bearer(token)).json()
    assert job["status"] == "queued" and job["waiting_for"]["reason"] == "no_runtime_registered"
    events = client.get(f"/v1/jobs/{body['job_id']}/events", headers=bearer(token)).text
    assert "waiting: no registered runtime offers model.pull" in events


def test_a_type_registered_but_offline_is_accepted_with_a_warning(client):
    signed_up = signup(client)
    token, workspace_id = signed_up["token"], signed_up["user"]["workspace_id"]
    _take_offline(workspace_id, _register(client, token, ["model.pull"]))
    accepted = client.post("/v1/jobs", headers=bearer(token), json=PULL)
    assert accepted.status_code == 202
    assert accepted.json()["waiting_for"]["reason"] == "no_runtime_online"
    assert "no online runtime offers model.pull" in accepted.json()["warnings"][0]


def test_a_job_an_online_runtime_takes_waits_for_nothing(client):
    token = signup(client)["token"]
    _register(client, token, ["model.pull"])
    body = client.post("/v1/jobs", headers=bearer(token), json=PULL).json()
    assert body["waiting_for"] is None and body["warnings"] == []
    assert client.get(f"/v1/jobs/{body['job_id']}", headers=bearer(token)).json()["waiting_for"] is None


def test_sandboxes_are_refused_or_wait_the_same_way(client):
    token = signup(client)["token"]
    refused = client.post("/v1/sandbox/sessions", headers=bearer(token), json={"start_command": "node s.js"})
    assert refused.status_code == 409 and "mcp.test" in refused.json()["error"]
    waiting = client.post("/api/sandboxes", headers=bearer(token), json={"start_command": "node s.js", "wait": True})
    assert waiting.status_code == 201 and waiting.json()["waiting_for"]["capability"] == "mcp.test"
