"""One bad job never stops the sweeper or the dead-letter consumer (issue 9): each item is handled
on its own, a failure is logged and the rest go on; a dead letter of an earlier dispatch of a job
dispatched again since is ignored."""

import json

import pytest

from app import composition
from app.store import keys
from tests.conftest import bearer, signup
from tests.support.protocol_runtime import ProtocolRuntime


@pytest.fixture
def user(client) -> str:
    return signup(client)["token"]


def _job(client, user) -> str:
    response = client.post("/v1/jobs", headers=bearer(user), json={"type": "agent.run", "payload": {"agent": "a"}, "wait": True})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _workspace(client, user) -> str:
    return client.get("/v1/auth/me", headers=bearer(user)).json()["user"]["workspace_id"]


def _status(client, user, job_id) -> str:
    return client.get(f"/v1/jobs/{job_id}", headers=bearer(user)).json()["status"]


def _poison(store, workspace_id: str, job_id: str, **changes) -> None:
    """Damage a stored job behind the API's back (a newer version's record, a manual edit)."""
    store.table.update(*keys.job(workspace_id, job_id), set=changes)


def _past_deadline(store, workspace_id: str, job_id: str) -> None:
    store.table.update(*keys.job(workspace_id, job_id), set={"deadline": 1.0})


def test_the_sweeper_goes_on_past_jobs_it_cannot_read_or_handle(client, user, store):
    workspace_id = _workspace(client, user)
    unreadable, unhandled, good = _job(client, user), _job(client, user), _job(client, user)
    _poison(store, workspace_id, unreadable, type="job.from.the.future")
    _poison(store, workspace_id, unhandled, deadline="tomorrow")
    _past_deadline(store, workspace_id, good)

    report = composition.services().sweeper.sweep()

    assert report.expired == 1
    assert _status(client, user, good) == "expired"
    assert store.table.get(*keys.job(workspace_id, unhandled))["status"] == "queued"  # left as it was


def test_the_sweeper_goes_on_past_a_runtime_it_cannot_read(client, user, store):
    runtime = ProtocolRuntime.of_workspace(client, user)
    good = _job(client, user)
    store.table.update(*keys.runtime(runtime.registration["workspace_id"], runtime.runtime_id),
                       set={"last_heartbeat": "a while ago"})
    _past_deadline(store, _workspace(client, user), good)

    composition.services().sweeper.sweep()
    assert _status(client, user, good) == "expired"


def _letter(message_id: str, body: str) -> dict:
    return {"messageId": message_id, "receiptHandle": f"r-{message_id}", "body": body,
            "attributes": {"ApproximateReceiveCount": "5"}, "messageAttributes": {}, "md5OfBody": "",
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:berth-dead-letters",
            "awsRegion": "us-east-1"}


def _job_letter(workspace_id: str, job_id: str, dispatch: int = 1) -> str:
    return json.dumps({"message": {"kind": "job", "job_id": job_id, "workspace_id": workspace_id,
                                   "type": "agent.run", "expires_at": 0, "dispatch": dispatch}})


def test_the_dead_letter_consumer_drops_a_letter_of_an_unreadable_job_and_ends_the_others(client, user, store):
    import functions.dead_letters

    workspace_id = _workspace(client, user)
    unreadable, good = _job(client, user), _job(client, user)
    _poison(store, workspace_id, unreadable, status="half-finished")

    answer = functions.dead_letters.handler({"Records": [_letter("m1", _job_letter(workspace_id, unreadable)),
                                                         _letter("m2", _job_letter(workspace_id, good))]}, None)

    assert answer == {"batchItemFailures": []}  # retrying could never help the unreadable one
    assert _status(client, user, good) == "error"


def test_a_dead_letter_of_an_earlier_dispatch_leaves_a_job_dispatched_again_since(client, user):
    first = ProtocolRuntime.of_workspace(client, user, slots=1)
    job_id = _job(client, user)
    [message] = first.messages()
    assert message.dispatch == 1
    # Its runtime went silent; the job went to another runtime (dispatch 2), where it runs.
    services = composition.services()
    services.lifecycle.requeue(services.store.jobs.get(message.workspace_id, job_id), "runtime went silent")
    second = ProtocolRuntime.of_workspace(client, user, slots=1)
    [again] = second.messages() or first.messages()
    assert again.dispatch == 2

    assert services.lifecycle.dead_letter(_job_letter(message.workspace_id, job_id, dispatch=1), 5) is False
    assert _status(client, user, job_id) == "queued"  # assigned and waiting for its worker, not failed
    assert services.lifecycle.dead_letter(_job_letter(message.workspace_id, job_id, dispatch=2), 5) is True
    assert _status(client, user, job_id) == "error"
