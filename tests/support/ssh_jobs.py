"""Infra SSH jobs as the worker receives them: payloads and secrets for the test server, and a
JobContext that records the events the executor emits."""

import time
from dataclasses import dataclass
from typing import Any

from app.contract.ssh.jobs import SshForwardPayload, SshRunPayload, SshSecrets
from tests.support.ssh_server import SshTestServer
from workers.executors.base import JobContext

PROXY_KEY = "digest-of-the-runtime-token"  # what the worker derives from its token, and the API signs with


@dataclass
class SshJob:
    """What the API sends for one `ssh.run` / `ssh.forward`: the payload, and the secrets sealed
    beside it (as the worker opens them into `ctx.secrets`)."""

    payload: dict[str, Any]
    secrets: dict[str, Any]


@dataclass
class RecordedJob:
    ctx: JobContext
    events: list[tuple[str, str, str, dict]]

    def data(self, step: str, status: str) -> dict:
        """The data of the last event with this step and status."""
        return next(data for s, st, _, data in reversed(self.events) if (s, st) == (step, status))


def recorded_job(job_type: str, job: SshJob, *, job_id: str = "job-1", workspace_id: str = "ws-1",
                 ttl_seconds: float = 600) -> RecordedJob:
    events: list[tuple[str, str, str, dict]] = []

    async def emit(step: str, status: str, message: str = "", data: dict | None = None) -> None:
        events.append((step, status, message, data or {}))

    ctx = JobContext(job_id=job_id, workspace_id=workspace_id, job_type=job_type, payload=job.payload,
                     secrets=job.secrets, expires_at=time.time() + ttl_seconds, emit=emit, work_dir="/nonexistent",
                     proxy_key=PROXY_KEY)
    return RecordedJob(ctx, events)


def secrets(server: SshTestServer, client_private_key: str | None = None,
            secret_parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """`ctx.secrets` as the worker opens them (the shape app.contract.ssh.jobs.SshSecrets reads)."""
    opened = {"client_private_key": client_private_key or server.client_private_key,
              "secret_parameters": secret_parameters or {}}
    SshSecrets.model_validate(opened)
    return opened


def run_payload(server: SshTestServer, action: dict[str, Any], parameters: dict[str, Any] | None = None,
                client_private_key: str | None = None, **host: Any) -> SshJob:
    """An ssh.run job for `action` (hosts default to the test host) on the test server; the values
    of the action's secret parameters travel with the secrets, as the API sends them."""
    run = SshRunPayload.model_validate({
        "host": server.host_entry(**host), "action": {"name": "test-action", "hosts": ["test-host"], **action},
        "parameters": parameters or {}, "connect_timeout_seconds": 10,
    })
    secret = {name for name, spec in run.action.parameters.items() if spec.secret}
    public = {name: value for name, value in run.parameters.items() if name not in secret}
    hidden = {name: value for name, value in run.parameters.items() if name in secret}
    payload = run.model_copy(update={"parameters": public}).model_dump(mode="json")
    return SshJob(payload, secrets(server, client_private_key, hidden))


def forward_payload(server: SshTestServer, target_port: int, **forward: Any) -> SshJob:
    payload = SshForwardPayload.model_validate({
        "host": server.host_entry(),
        "forward": {"name": "dashboard", "target_port": target_port, "hosts": ["test-host"], **forward},
    }).model_dump(mode="json")
    return SshJob(payload, secrets(server))
