"""An installation's server on the services themselves (in-process moto; the one runtime cannot
isolate sandboxes, so its job waits queued), with a clock that moves: the idle deadline, its
limit, and two starts at once."""

import time

import pytest

from app.clock import Clock
from app.composition import Services
from app.contract.messages import JobStatus
from tests.support.protocol_runtime import ProtocolRuntime

TIME = "io.github.modelcontextprotocol/time"


class MovableClock(Clock):
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock():
    return MovableClock()


@pytest.fixture
def services(aws_resources, clock):
    return Services(aws_resources, clock=clock)


@pytest.fixture
def principal(services, client):
    signed_in = services.accounts.signup("Ada", "ada@example.com", "correct-horse", None)
    # A runtime that runs mcp.run but isolates nothing: the server's job is queued, not refused.
    ProtocolRuntime.of_workspace(client, signed_in.token, capabilities=("mcp.run",))
    return services.authenticator.resolve(signed_in.token, kinds=("session",))


def test_a_server_lives_its_idle_time_past_each_use_within_the_policys_limit(services, principal, clock):
    settings = services.settings
    installation = services.installations.install(principal, TIME, {}, kind=None, user_id=None)
    installation, job = services.installation_servers.ensure(principal, installation)
    assert job.status == JobStatus.queued and job.type.value == "mcp.run"
    assert job.deadline == pytest.approx(job.created_epoch + settings.installation_idle_seconds)
    assert job.payload["labels"] == {"installation": installation.installation_id}

    def used_at(offset: float):
        clock.offset = offset
        _, again = services.installation_servers.ensure(principal, installation)
        assert again.job_id == job.job_id  # reused, not started again
        return services.jobs.get(principal, job.job_id).deadline - job.created_epoch

    assert used_at(100) == pytest.approx(settings.installation_idle_seconds)  # more than half left: no write
    assert used_at(500) == pytest.approx(500 + settings.installation_idle_seconds, abs=1)
    assert used_at(3000) == pytest.approx(settings.max_ttl_seconds)  # never past the policy's limit


def test_two_starts_at_once_leave_one_server(services, principal):
    installation = services.installations.install(principal, TIME, {}, kind=None, user_id=None)
    first, winner = services.installation_servers.ensure(principal, installation)

    _, reused = services.installation_servers.ensure(principal, installation)  # a stale read: no server yet

    assert reused.job_id == winner.job_id
    queued = services.jobs.page(principal, limit=10, cursor=None).items
    assert {job.job_id: job.status for job in queued} == {
        winner.job_id: JobStatus.queued,
        next(job.job_id for job in queued if job.job_id != winner.job_id): JobStatus.cancelled}
    assert services.store.installations.get(principal.workspace_id, first.installation_id).sandbox_id == winner.job_id
