"""Lambda entry point consuming the dead-letter queue: each job whose message kept failing ends
as `error` with the reason. Partial batch failures are reported so only failed records retry."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from app.composition import services
from app.logs import configure

configure()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 0)
    services().lifecycle.dead_letter(record.body, receive_count)


def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
