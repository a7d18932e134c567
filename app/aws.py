"""Lazily created boto3 clients, one per service per process.

boto3 costs ~150 ms to import, so nothing imports it at module load: `/v1/health` on a cold
Lambda never pays for it. Endpoint and credentials come from the standard AWS environment.
"""

import threading
from typing import Any

from app.contract.aws import client_config

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def client(service: str) -> Any:
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            import boto3

            _clients[service] = boto3.session.Session().client(service, config=client_config())
        return _clients[service]


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints or mock_aws contexts)."""
    with _lock:
        _clients.clear()
