"""How the worker reaches its two queues: SQS directly (a fleet with an IAM role) or leased
through the API (a user's own host, which has only its runtime token).

Both offer the same three operations; a message's `receipt` is what `delete` and
`change_visibility` take back. Any failure is a `QueueError`: the caller backs off or lets the
message's visibility lapse.
"""

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Literal, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.contract.messages import LeaseRequest, ReceiptRequest
from workers.api_client import ApiError, RuntimeApiClient

QueueName = Literal["jobs", "control"]
LEASE_MIN_VISIBILITY_SECONDS = 5  # LeaseRequest's lower bound
LEASE_MAX_WAIT_SECONDS = 20


@dataclass(frozen=True)
class ReceivedMessage:
    queue: QueueName
    receipt: str
    receive_count: int
    body: str


class QueueError(Exception):
    pass


class QueueTransport(Protocol):
    async def receive(
        self, queue: QueueName, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[ReceivedMessage]: ...

    async def delete(self, queue: QueueName, receipt: str) -> None: ...

    async def change_visibility(self, queue: QueueName, receipt: str, visibility_seconds: int) -> None: ...


class SqsTransport:
    """boto3 on the runtime's queue URLs; endpoint and credentials from the standard AWS env."""

    def __init__(self, jobs_queue_url: str, control_queue_url: str):
        self._urls: dict[str, str] = {"jobs": jobs_queue_url, "control": control_queue_url}
        # Retries ride out SQS throttling; the pool serves both long polls and the keepers at once.
        config = Config(retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=32)
        self._sqs = boto3.session.Session().client("sqs", region_name=_region(jobs_queue_url), config=config)

    async def receive(
        self, queue: QueueName, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[ReceivedMessage]:
        response = await self._call(
            self._sqs.receive_message,
            QueueUrl=self._urls[queue],
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            ReceivedMessage(
                queue=queue,
                receipt=message["ReceiptHandle"],
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                body=message["Body"],
            )
            for message in response.get("Messages", [])
        ]

    async def delete(self, queue: QueueName, receipt: str) -> None:
        await self._call(self._sqs.delete_message, QueueUrl=self._urls[queue], ReceiptHandle=receipt)

    async def change_visibility(self, queue: QueueName, receipt: str, visibility_seconds: int) -> None:
        await self._call(
            self._sqs.change_message_visibility,
            QueueUrl=self._urls[queue],
            ReceiptHandle=receipt,
            VisibilityTimeout=visibility_seconds,
        )

    @staticmethod
    async def _call(operation, **kwargs) -> dict:
        # boto3 is blocking; a thread keeps a 20 s long poll from stalling the event loop.
        try:
            return await asyncio.to_thread(operation, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(f"SQS {operation.__name__} failed: {exc}") from exc


def _region(queue_url: str) -> str | None:
    """The region boto3 would pick, else AWS_REGION (which ECS and Lambda set, and botocore does not
    read), else the one in an AWS queue URL (local URLs carry none)."""
    configured = boto3.session.Session().region_name or os.environ.get("AWS_REGION")
    if configured:
        return configured
    match = re.search(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com", queue_url)
    return match.group(1) if match else None


class LeaseTransport:
    """The API leases messages on the worker's behalf; receipts are the API's."""

    def __init__(self, api: RuntimeApiClient):
        self._api = api

    async def receive(
        self, queue: QueueName, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[ReceivedMessage]:
        request = LeaseRequest(
            queue=queue,
            max_messages=max_messages,
            wait_seconds=min(wait_seconds, LEASE_MAX_WAIT_SECONDS),
            visibility_seconds=max(visibility_seconds, LEASE_MIN_VISIBILITY_SECONDS),
        )
        try:
            response = await self._api.lease(request)
        except ApiError as exc:
            raise QueueError(f"lease from {queue} queue failed: {exc}") from exc
        return [
            ReceivedMessage(queue=queue, receipt=m.receipt, receive_count=m.receive_count, body=m.body)
            for m in response.messages
        ]

    async def delete(self, queue: QueueName, receipt: str) -> None:
        try:
            await self._api.ack(ReceiptRequest(queue=queue, receipt=receipt))
        except ApiError as exc:
            raise QueueError(f"ack on {queue} queue failed: {exc}") from exc

    async def change_visibility(self, queue: QueueName, receipt: str, visibility_seconds: int) -> None:
        try:
            await self._api.change_visibility(
                ReceiptRequest(queue=queue, receipt=receipt, visibility_seconds=visibility_seconds)
            )
        except ApiError as exc:
            raise QueueError(f"visibility change on {queue} queue failed: {exc}") from exc
