"""SQS: per-runtime queues, the dead-letter queue, and the message operations the API uses.

Each runtime has two queues: `jobs` (redriven to the shared dead-letter queue after
`job_max_receives` deliveries) and `control` (short-lived synchronous requests for running jobs;
a stale control message is simply dropped, so it has no dead-letter queue).

The shared fleet's queues are named apart (`<prefix>-shared-rt-<id>`) from the queues of runtimes
a workspace hosts (`<prefix>-rt-<id>`), so the fleet's IAM role can be allowed the former alone
and a compromised shared worker cannot read a tenant's queue (template.yaml, WorkerTaskRole).
"""

import json
from typing import Any

from app.aws import AwsClients
from app.contract.messages import ControlMessage, JobMessage, LeasedMessage, QueueEnvelope
from app.settings import Settings


class Queues:
    def __init__(self, clients: AwsClients, settings: Settings):
        self._clients = clients
        self._settings = settings
        self._dead_letter_url: str | None = None  # looked up once
        self._dead_letter_arn: str | None = None

    @property
    def _sqs(self) -> Any:
        return self._clients.client("sqs")

    def runtime_queue_names(self, runtime_id: str, *, shared: bool) -> tuple[str, str]:
        base = f"{self._settings.queue_prefix}-{'shared-' if shared else ''}rt-{runtime_id}"
        return base, f"{base}-control"

    def probe_dead_letter_queue(self) -> str:
        """The dead-letter queue's URL, looked up now (a readiness check)."""
        return self._sqs.get_queue_url(QueueName=self._settings.dead_letter_queue_name)["QueueUrl"]

    def dead_letter_queue_url(self) -> str:
        if self._dead_letter_url is None:
            self._dead_letter_url = self._sqs.get_queue_url(QueueName=self._settings.dead_letter_queue_name)["QueueUrl"]
        return self._dead_letter_url

    def _dead_letter_queue_arn(self) -> str:
        if self._dead_letter_arn is None:
            attributes = self._sqs.get_queue_attributes(QueueUrl=self.dead_letter_queue_url(),
                                                        AttributeNames=["QueueArn"])
            self._dead_letter_arn = attributes["Attributes"]["QueueArn"]
        return self._dead_letter_arn

    def ensure_dead_letter_queue(self) -> str:
        return self._sqs.create_queue(
            QueueName=self._settings.dead_letter_queue_name, Attributes={"MessageRetentionPeriod": "1209600"}
        )["QueueUrl"]

    def create_runtime_queues(self, runtime_id: str, *, shared: bool) -> tuple[str, str]:
        jobs_name, control_name = self.runtime_queue_names(runtime_id, shared=shared)
        redrive = {"deadLetterTargetArn": self._dead_letter_queue_arn(),
                   "maxReceiveCount": str(self._settings.job_max_receives)}
        jobs_url = self._sqs.create_queue(
            QueueName=jobs_name,
            Attributes={"VisibilityTimeout": str(self._settings.job_visibility_seconds),
                        "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        control_url = self._sqs.create_queue(
            QueueName=control_name, Attributes={"VisibilityTimeout": "30", "MessageRetentionPeriod": "300"}
        )["QueueUrl"]
        return jobs_url, control_url

    def delete_queue(self, queue_url: str) -> None:
        """Delete a queue and whatever it holds; one already gone is fine."""
        try:
            self._sqs.delete_queue(QueueUrl=queue_url)
        except self._sqs.exceptions.QueueDoesNotExist:
            pass

    def send(self, queue_url: str, message: JobMessage | ControlMessage) -> None:
        self._sqs.send_message(QueueUrl=queue_url, MessageBody=QueueEnvelope(message=message).model_dump_json())

    def receive(self, queue_url: str, *, max_messages: int, wait_seconds: int,
                visibility_seconds: int) -> list[LeasedMessage]:
        response = self._sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds, MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            LeasedMessage(receipt=m["ReceiptHandle"], body=m["Body"],
                          receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")))
            for m in response.get("Messages", [])
        ]

    def delete(self, queue_url: str, receipt: str) -> None:
        self._sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)

    def change_visibility(self, queue_url: str, receipt: str, seconds: int) -> None:
        self._sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
