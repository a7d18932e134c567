"""boto3 clients, made on first use and kept: one per AWS service per composition root.

boto3 costs ~150 ms to import, so nothing imports it at module load: `/v1/health` on a cold
Lambda never pays for it. Endpoint and credentials come from the standard AWS environment; the
client configuration is the worker's too (app.contract.aws).
"""

import threading
from typing import Any

from app.contract.aws import client_config


class AwsClients:
    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        found = self._clients.get(service)
        if found is not None:
            return found
        with self._lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.session.Session().client(service, config=client_config())
            return self._clients[service]
