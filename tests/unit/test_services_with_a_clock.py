"""Services take their clock from the composition root, so time can be moved instead of waited for."""

import time

from app.clock import Clock
from app.composition import Services
from app.contract.messages import JobStatus, JobType


class MovableClock(Clock):
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


def test_the_sweeper_expires_a_job_once_its_clock_passes_the_deadline(aws_resources):
    clock = MovableClock()
    services = Services(aws_resources, clock=clock)
    signed_in = services.accounts.signup("Ada", "ada@example.com", "correct-horse", None)
    principal = services.authenticator.resolve(signed_in.token, kinds=("session",))
    job = services.jobs.create(principal, JobType.agent_run, {"agent": "a"}, ttl_seconds=60, wait=True)

    assert services.sweeper.sweep().expired == 0
    clock.offset = 61
    assert services.sweeper.sweep().expired == 1
    expired = services.jobs.get(principal, job.job_id)
    assert expired.status == JobStatus.expired and expired.error == "expired"
    assert services.sweeper.sweep().expired == 0  # a final status is final
