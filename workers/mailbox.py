"""The worker's side of a received queue message: read it as the kind its queue carries, delete it,
hide it for longer or set it aside. A failed delete or visibility change is logged, not raised:
the message comes back, and a redelivery is harmless (the claim refuses it, or its deadline has
passed)."""

import logging
from typing import TypeVar

from pydantic import ValidationError

from app.contract.logs import log
from app.contract.messages import ControlMessage, JobMessage, QueueEnvelope
from workers.transport import QueueError, QueueTransport, ReceivedMessage

# An unreadable message comes back soon, and reaches the DLQ after maxReceiveCount.
POISON_VISIBILITY_SECONDS = 2

logger = logging.getLogger("berth.worker")
_Message = TypeVar("_Message", JobMessage, ControlMessage)


class Mailbox:
    def __init__(self, transport: QueueTransport):
        self.transport = transport

    async def delete(self, received: ReceivedMessage) -> None:
        try:
            await self.transport.delete(received.queue, received.receipt)
        except QueueError as exc:
            log(logger, logging.WARNING, "deleting a message failed", queue=received.queue, error=str(exc))

    async def change_visibility(self, received: ReceivedMessage, seconds: int) -> None:
        try:
            await self.transport.change_visibility(received.queue, received.receipt, seconds)
        except QueueError as exc:
            log(logger, logging.WARNING, "changing message visibility failed", queue=received.queue, error=str(exc))

    async def set_aside_unreadable(self, received: ReceivedMessage, error: Exception) -> None:
        # Not deleted: it comes back shortly and, after maxReceiveCount, lands in the DLQ where
        # the API's dead-letter consumer ends its job with a reason.
        log(logger, logging.ERROR, "unreadable queue message", queue=received.queue,
            attempt=received.receive_count, error=describe_invalid(error))
        await self.change_visibility(received, POISON_VISIBILITY_SECONDS)


def parse(received: ReceivedMessage, kind: type[_Message]) -> _Message:
    """The queue message of the kind this queue carries; ValueError for anything else."""
    message = QueueEnvelope.model_validate_json(received.body).message
    if not isinstance(message, kind):
        raise ValueError(f"a {message.kind} message on the {received.queue} queue")
    return message


def describe_invalid(error: Exception) -> str:
    """Why something did not parse, without quoting it (a payload may carry credentials)."""
    if isinstance(error, ValidationError):
        problems = error.errors(include_input=False, include_url=False)
        return "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems)[:1000]
    return str(error)[:1000]
