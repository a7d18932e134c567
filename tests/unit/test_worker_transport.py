"""The worker's queue transports: SQS against moto in-process, and leasing through the API
(played by httpx.MockTransport behind the real runtime API client)."""

import asyncio
import json

import boto3
import httpx
import pytest
from moto import mock_aws

from workers.api_client import RuntimeApiClient
from workers.transport import LeaseTransport, QueueError, SqsTransport

MAX_RECEIVES = 3


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("sqs")


@pytest.fixture
def queues(sqs) -> dict[str, str]:
    """A runtime's jobs and control queues, both redriving to one dead-letter queue."""
    dead_letters = sqs.create_queue(QueueName="berth-dead-letters")["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(MAX_RECEIVES)})
    urls = {"dead_letters": dead_letters}
    for queue in ("jobs", "control"):
        urls[queue] = sqs.create_queue(QueueName=f"berth-rt-test-{queue}", Attributes={"RedrivePolicy": redrive})[
            "QueueUrl"
        ]
    return urls


def visible_count(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_receive_change_visibility_and_delete(sqs, queues):
    transport = SqsTransport(queues["jobs"], queues["control"])
    sqs.send_message(QueueUrl=queues["jobs"], MessageBody='{"message": "first"}')

    async def scenario():
        first = await transport.receive("jobs", 1, 0, 30)
        hidden = await transport.receive("jobs", 1, 0, 30)
        await transport.change_visibility("jobs", first[0].receipt, 0)
        again = await transport.receive("jobs", 1, 0, 30)
        await transport.delete("jobs", again[0].receipt)
        return first, hidden, again

    first, hidden, again = asyncio.run(scenario())

    assert [(m.queue, m.body, m.receive_count) for m in first] == [("jobs", '{"message": "first"}', 1)]
    assert hidden == []
    assert [(m.body, m.receive_count) for m in again] == [('{"message": "first"}', 2)]
    assert visible_count(sqs, queues["jobs"]) == 0


def test_each_queue_name_reads_its_own_queue(sqs, queues):
    transport = SqsTransport(queues["jobs"], queues["control"])
    sqs.send_message(QueueUrl=queues["control"], MessageBody="control body")

    async def scenario():
        return await transport.receive("jobs", 10, 0, 30), await transport.receive("control", 10, 0, 30)

    jobs, control = asyncio.run(scenario())

    assert jobs == []
    assert [(m.queue, m.body) for m in control] == [("control", "control body")]


def test_a_message_never_deleted_reaches_the_dead_letter_queue_after_max_receives(sqs, queues):
    transport = SqsTransport(queues["jobs"], queues["control"])
    sqs.send_message(QueueUrl=queues["jobs"], MessageBody="not json")

    async def keep_failing() -> list[int]:
        counts = []
        while messages := await transport.receive("jobs", 1, 0, 30):
            counts.append(messages[0].receive_count)
            # What the worker does with a poison message: hand it back instead of deleting it.
            await transport.change_visibility("jobs", messages[0].receipt, 0)
        return counts

    assert asyncio.run(keep_failing()) == [1, 2, 3]
    dead = sqs.receive_message(QueueUrl=queues["dead_letters"], MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in dead] == ["not json"]
    assert visible_count(sqs, queues["jobs"]) == 0


def test_failures_surface_as_queue_errors(sqs, queues):
    missing = queues["jobs"].replace("berth-rt-test-jobs", "no-such-queue")
    transport = SqsTransport(missing, queues["control"])

    with pytest.raises(QueueError):
        asyncio.run(transport.receive("jobs", 1, 0, 30))
    with pytest.raises(QueueError):
        asyncio.run(SqsTransport(queues["jobs"], queues["control"]).delete("jobs", "not-a-receipt"))


class FakeLeaseApi:
    """The API's lease routes: one message to lease, then acks and visibility changes recorded."""

    def __init__(self, status: int = 200):
        self.status = status
        self.calls: list[tuple[str, dict, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.url.path, json.loads(request.content), request.headers["Authorization"]))
        if self.status != 200:
            return httpx.Response(self.status, json={"success": False, "error": "down", "status": self.status})
        if request.url.path.endswith("/lease"):
            return httpx.Response(200, json={"messages": [{"receipt": "rcpt-1", "receive_count": 2, "body": "{}"}]})
        return httpx.Response(200, json={"ok": True})


def test_lease_transport_speaks_the_lease_routes():
    fake = FakeLeaseApi()

    async def scenario():
        api = RuntimeApiClient("http://api.test", "brt_runtime-token", transport=httpx.MockTransport(fake))
        transport = LeaseTransport(api)
        try:
            messages = await transport.receive("control", 5, 20, 90)
            await transport.change_visibility("control", "rcpt-1", 0)
            await transport.delete("control", "rcpt-1")
            return messages
        finally:
            await api.aclose()

    messages = asyncio.run(scenario())

    assert [(m.queue, m.receipt, m.receive_count, m.body) for m in messages] == [("control", "rcpt-1", 2, "{}")]
    assert fake.calls == [
        ("/v1/cloud/runtimes/lease",
         {"queue": "control", "max_messages": 5, "wait_seconds": 20, "visibility_seconds": 90},
         "Bearer brt_runtime-token"),
        ("/v1/cloud/runtimes/visibility",
         {"queue": "control", "receipt": "rcpt-1", "visibility_seconds": 0},
         "Bearer brt_runtime-token"),
        ("/v1/cloud/runtimes/ack",
         {"queue": "control", "receipt": "rcpt-1", "visibility_seconds": None},
         "Bearer brt_runtime-token"),
    ]


def test_lease_transport_reports_an_unreachable_api_as_a_queue_error():
    fake = FakeLeaseApi(status=503)

    async def scenario():
        api = RuntimeApiClient("http://api.test", "brt_runtime-token", transport=httpx.MockTransport(fake))
        try:
            await LeaseTransport(api).receive("jobs", 1, 0, 30)
        finally:
            await api.aclose()

    with pytest.raises(QueueError):
        asyncio.run(scenario())
