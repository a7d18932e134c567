"""Fair dispatch (issue 9): one workspace's backlog never starves another's. Waiting jobs are read
per workspace; a shared runtime takes them in turns across workspaces, a workspace's own runtime
reads only its workspace's."""

import pytest

from app import composition
from app.contract.messages import JobType
from app.store import keys
from tests.conftest import bearer, signup
from tests.support.protocol_runtime import ProtocolRuntime, shared_join_token

BACKLOG = 150


@pytest.fixture
def roomy(client, monkeypatch):
    """A policy that lets one workspace queue a backlog."""
    monkeypatch.setenv("BERTH_MAX_CONCURRENT_JOBS", str(BACKLOG + 10))
    composition.reset()


def _queue(client, token: str, count: int) -> list[str]:
    services = composition.services()
    principal = services.authenticator.resolve(token, kinds=("session",))
    return [services.jobs.create(principal, JobType.agent_run, {"agent": "a"}, wait=True).job_id for _ in range(count)]


def _job(client, token: str, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()


def test_a_shared_runtime_coming_online_serves_a_small_workspace_beside_a_big_backlog(client, roomy):
    big, small = signup(client, "a@example.com")["token"], signup(client, "b@example.com")["token"]
    backlog = _queue(client, big, BACKLOG)
    [waiting] = _queue(client, small, 1)

    runtime = ProtocolRuntime.register(client, shared_join_token(), slots=2)

    dispatched = {message.job_id for message in runtime.messages()}
    assert waiting in dispatched  # in the first round, not after the other workspace's 150
    assert dispatched == {waiting, backlog[0]}  # and the big workspace's oldest beside it
    assert _job(client, small, waiting)["runtime_id"] == runtime.runtime_id


def test_turns_go_round_the_workspaces_as_slots_free_up(client, roomy):
    tokens = [signup(client, f"user{n}@example.com")["token"] for n in range(3)]
    jobs = [_queue(client, token, 3) for token in tokens]
    runtime = ProtocolRuntime.register(client, shared_join_token(), slots=1)

    served = []
    for _ in range(3):
        [message] = runtime.messages()
        served.append(message.job_id)
        claim = runtime.claim(message)
        done = runtime.events(message.workspace_id, message.job_id, claim["claim_id"],
                              [{"seq": claim["next_seq"], "step": "job", "status": "complete"}])
        assert done.status_code == 200  # its slot goes to the next workspace in line
    owners = [next(n for n, owned in enumerate(jobs) if job_id in owned) for job_id in served]
    assert sorted(owners) == [0, 1, 2]  # each workspace once, before any gets a second


def test_a_workspaces_own_runtime_reads_only_its_workspace_behind_another_backlog(client, roomy):
    big, small = signup(client, "a@example.com")["token"], signup(client, "b@example.com")["token"]
    _queue(client, big, BACKLOG)
    [waiting] = _queue(client, small, 1)

    own = ProtocolRuntime.of_workspace(client, small, slots=1)

    assert [message.job_id for message in own.messages()] == [waiting]


def test_the_sweeper_dispatches_what_waits_in_turns_too(client, roomy, store):
    runtime = ProtocolRuntime.register(client, shared_join_token(), slots=2)
    runtime.heartbeat(draining=True)  # nothing goes to it meanwhile
    big, small = signup(client, "a@example.com")["token"], signup(client, "b@example.com")["token"]
    backlog = _queue(client, big, BACKLOG)
    [waiting] = _queue(client, small, 1)
    runtime.heartbeat(draining=True)  # queueing the backlog may take longer than a heartbeat interval
    store.table.update(*keys.runtime("shared", runtime.runtime_id), set={"status": "online"})  # behind the API's back
    store.runtimes.forget("shared")

    composition.services().sweeper.sweep()

    assert {message.job_id for message in runtime.messages()} == {backlog[0], waiting}
