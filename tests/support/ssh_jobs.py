"""Infra SSH jobs as the worker receives them: payloads for the test server, and a JobContext
that records the events the executor emits."""

import time
from dataclasses import dataclass
from typing import Any

from app.contract.ssh.jobs import SshForwardPayload, SshRunPayload
from tests.support.ssh_server import SshTestServer
from workers.executors.base import JobContext

PROXY_KEY = "digest-of-the-runtime-token"  # what the worker derives from its token, and the API signs with


@dataclass
class RecordedJob:
    ctx: JobContext
    events: list[tuple[str, str, str, dict]]

    def data(self, step: str, status: str) -> dict:
        """The data of the last event with this step and status."""
        return next(data for s, st, _, data in reversed(self.events) if (s, st) == (step, status))


def recorded_job(job_type: str, payload: dict[str, Any], *, job_id: str = "job-1", workspace_id: str = "ws-1",
                 ttl_seconds: float = 600) -> RecordedJob:
    events: list[tuple[str, str, str, dict]] = []

    async def emit(step: str, status: str, message: str = "", data: dict | None = None) -> None:
        events.append((step, status, message, data or {}))

    ctx = JobContext(job_id=job_id, workspace_id=workspace_id, job_type=job_type, payload=payload,
                     expires_at=time.time() + ttl_seconds, emit=emit, work_dir="/nonexistent", proxy_key=PROXY_KEY)
    return RecordedJob(ctx, events)


def run_payload(server: SshTestServer, action: dict[str, Any], parameters: dict[str, Any] | None = None,
                client_private_key: str | None = None, **host: Any) -> dict[str, Any]:
    """An ssh.run payload for `action` (hosts default to the test host) on the test server."""
    return SshRunPayload.model_validate({
        "host": server.host_entry(**host), "action": {"name": "test-action", "hosts": ["test-host"], **action},
        "parameters": parameters or {}, "client_private_key": client_private_key or server.client_private_key,
        "connect_timeout_seconds": 10,
    }).job_payload()


def forward_payload(server: SshTestServer, target_port: int, **forward: Any) -> dict[str, Any]:
    return SshForwardPayload.model_validate({
        "host": server.host_entry(), "client_private_key": server.client_private_key,
        "forward": {"name": "dashboard", "target_port": target_port, "hosts": ["test-host"], **forward},
    }).job_payload()
