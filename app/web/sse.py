"""Server-Sent Events framing for job event streams (`/v1/jobs/{id}/events` and the sandbox
sessions' alias): the router side of app.services.event_stream.

Each event is a frame whose `id` is its sequence number and whose `event` is its status; a
stream that saw the job end says `event: end`. The `retry` hint asks clients to reconnect after
a second when the window closes.
"""

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.auth.principal import Principal
from app.domain.jobs import JobEvent
from app.errors import BadRequest
from app.services.event_stream import JobEventStream, StreamEnd

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def first_seq(last_event_id: str | None, after: int | None) -> int:
    """Where a stream resumes: after `Last-Event-ID`, else after `?after=`, else from the start."""
    if last_event_id:
        if not last_event_id.isdigit():
            raise BadRequest("Last-Event-ID must be an event sequence number")
        return int(last_event_id)
    return after if after is not None else 0


def frame(event: JobEvent) -> str:
    body = {"seq": event.seq, "step": event.step, "status": event.status.value, "message": event.message,
            "data": event.data, "at": event.at}
    return f"id: {event.seq}\nevent: {event.status.value}\ndata: {json.dumps(body)}\n\n"


async def _frames(events: AsyncGenerator[JobEvent | StreamEnd, None]) -> AsyncIterator[str]:
    async with aclosing(events):  # closing the response closes the stream, and its feed subscription
        yield "retry: 1000\n\n"
        async for item in events:
            yield "event: end\ndata: {}\n\n" if isinstance(item, StreamEnd) else frame(item)


async def job_event_response(streams: JobEventStream, principal: Principal, job_id: str, last_event_id: str | None,
                             after: int | None) -> StreamingResponse:
    start = first_seq(last_event_id, after)
    # Subscribed before the first read, so an event stored in between is not missed.
    feed = streams.subscribe(principal, job_id)
    try:
        opening = await run_in_threadpool(streams.opening, principal, job_id, start)
    except BaseException:
        feed.close()
        raise
    return StreamingResponse(_frames(streams.follow(feed, start, opening)), media_type="text/event-stream",
                             headers=_HEADERS)
