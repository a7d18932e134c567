"""SQS: per-runtime queues, the dead-letter queue, and the message operations the API uses.

Each runtime has two queues: `jobs` (redriven to the shared dead-letter queue after
`job_max_receives` deliveries) and `control` (short-lived synchronous requests for running jobs;
a stale control message is simply dropped, so it has no dead-letter queue).
"""

import json
from functools import lru_cache

from app import aws
from app.contract.messages import ControlMessage, JobMessage, LeasedMessage, QueueEnvelope
from app.settings import get_settings


def _sqs():
    return aws.client("sqs")


def runtime_queue_names(runtime_id: str) -> tuple[str, str]:
    prefix = get_settings().queue_prefix
    return f"{prefix}-rt-{runtime_id}", f"{prefix}-rt-{runtime_id}-control"


@lru_cache(maxsize=1)
def dead_letter_queue_url() -> str:
    return _sqs().get_queue_url(QueueName=get_settings().dead_letter_queue_name)["QueueUrl"]


@lru_cache(maxsize=1)
def _dead_letter_queue_arn() -> str:
    attributes = _sqs().get_queue_attributes(QueueUrl=dead_letter_queue_url(), AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def ensure_dead_letter_queue() -> str:
    return _sqs().create_queue(
        QueueName=get_settings().dead_letter_queue_name, Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]


def create_runtime_queues(runtime_id: str) -> tuple[str, str]:
    settings = get_settings()
    jobs_name, control_name = runtime_queue_names(runtime_id)
    redrive = {"deadLetterTargetArn": _dead_letter_queue_arn(), "maxReceiveCount": str(settings.job_max_receives)}
    jobs_url = _sqs().create_queue(
        QueueName=jobs_name,
        Attributes={"VisibilityTimeout": str(settings.job_visibility_seconds), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    control_url = _sqs().create_queue(
        QueueName=control_name, Attributes={"VisibilityTimeout": "30", "MessageRetentionPeriod": "300"}
    )["QueueUrl"]
    return jobs_url, control_url


def send(queue_url: str, message: JobMessage | ControlMessage) -> None:
    _sqs().send_message(QueueUrl=queue_url, MessageBody=QueueEnvelope(message=message).model_dump_json())


def receive(queue_url: str, *, max_messages: int, wait_seconds: int, visibility_seconds: int) -> list[LeasedMessage]:
    response = _sqs().receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=visibility_seconds, MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    return [
        LeasedMessage(receipt=m["ReceiptHandle"], body=m["Body"],
                      receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")))
        for m in response.get("Messages", [])
    ]


def delete(queue_url: str, receipt: str) -> None:
    _sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)


def change_visibility(queue_url: str, receipt: str, seconds: int) -> None:
    _sqs().change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
