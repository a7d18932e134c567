"""A runtime driven by hand through the API's runtime protocol (`/v1/cloud/runtimes/*`), for unit
tests on moto: register, heartbeat, read its job queue, claim, post events, renew or release."""

from dataclasses import dataclass
from typing import Any

from app import composition
from app.auth.principal import Principal, Tier
from app.contract.messages import JobMessage, QueueEnvelope
from tests.conftest import bearer

ISOLATED = {"isolation": "bubblewrap", "tool_dirs": []}
SANDBOX_LABELS = {"sandbox": "bubblewrap", "sandbox_network": "none"}


def shared_join_token() -> str:
    """A join token for the platform's shared fleet, minted as the local stack mints its own."""
    operator = Principal(kind="system", workspace_id="ws_platform", subject_id="tests", tier=Tier.admin,
                         credential_digest="", operator=True)
    secret, _ = composition.services().runtimes.mint_join_token(operator, name="shared", uses=1, ttl_seconds=3600,
                                                                shared=True, labels={})
    return secret


@dataclass
class ProtocolRuntime:
    client: Any
    registration: dict

    @classmethod
    def register(cls, client, join_token: str, *, capabilities=("agent.run",), slots: int = 2,
                 offers: dict | None = None, labels: dict | None = None) -> "ProtocolRuntime":
        body = {"join_token": join_token, "capabilities": list(capabilities), "max_concurrent_jobs": slots,
                "queue_mode": "sqs", "labels": labels or {}}
        if offers is not None:
            body["offers"] = offers
        response = client.post("/v1/cloud/runtimes/register", json=body)
        assert response.status_code == 201, response.text
        return cls(client, response.json())

    @classmethod
    def of_workspace(cls, client, user_token: str, **options) -> "ProtocolRuntime":
        join = client.post("/v1/cloud/join-tokens", headers=bearer(user_token), json={})
        assert join.status_code == 201, join.text
        return cls.register(client, join.json()["token"], **options)

    @property
    def runtime_id(self) -> str:
        return self.registration["runtime_id"]

    @property
    def headers(self) -> dict:
        return bearer(self.registration["runtime_token"])

    def post(self, path: str, body: dict):
        return self.client.post(f"/v1/cloud/runtimes{path}", headers=self.headers, json=body)

    def heartbeat(self, **body):
        response = self.post("/heartbeat", body)
        assert response.status_code == 200, response.text
        return response.json()

    def messages(self) -> list[JobMessage]:
        """Every job message waiting on its queue (received and deleted)."""
        sqs = composition.services().aws.client("sqs")
        found: list[JobMessage] = []
        while True:
            received = sqs.receive_message(QueueUrl=self.registration["jobs_queue_url"], MaxNumberOfMessages=10)
            if not received.get("Messages"):
                return found
            for message in received["Messages"]:
                sqs.delete_message(QueueUrl=self.registration["jobs_queue_url"], ReceiptHandle=message["ReceiptHandle"])
                envelope = QueueEnvelope.model_validate_json(message["Body"])
                assert isinstance(envelope.message, JobMessage)
                found.append(envelope.message)

    def claim(self, message: JobMessage) -> dict:
        response = self.post(f"/jobs/{message.workspace_id}/{message.job_id}/claim",
                             {"dispatch": message.dispatch, "worker_id": "w1", "start_seq": message.start_seq})
        assert response.status_code == 200 and response.json()["claimed"], response.text
        return response.json()

    def events(self, workspace_id: str, job_id: str, claim_id: str, events: list[dict]):
        return self.post(f"/jobs/{workspace_id}/{job_id}/events", {"claim_id": claim_id, "events": events})

    def lease(self, workspace_id: str, job_id: str, claim_id: str, **body):
        return self.post(f"/jobs/{workspace_id}/{job_id}/lease", {"claim_id": claim_id, **body})
