"""Following a job's events: what an SSE stream sends, without the framing (app.web.sse).

A stream subscribes to the process's event feed before its first read, so an event stored in
between is not missed; then it takes what this process publishes, and reads the table whenever
that leaves a gap or nothing came within `sse_poll_seconds` (another process's writes). It ends
after the job's final event, or at `sse_window_seconds`, under API Gateway's 29 s cut; the client
resumes with Last-Event-ID.
"""

import asyncio
from collections.abc import AsyncGenerator

from app.auth.principal import Principal
from app.clock import Clock
from app.domain.jobs import JobEvent
from app.errors import NotFound
from app.services.event_feed import EventFeed, Subscription
from app.settings import Settings
from app.store import Store


class StreamEnd:
    """The job is final and every event was sent: the stream says so and closes."""


END = StreamEnd()


class JobEventStream:
    def __init__(self, store: Store, feed: EventFeed, settings: Settings, clock: Clock):
        self.store = store
        self.feed = feed
        self.settings = settings
        self.clock = clock

    def subscribe(self, principal: Principal, job_id: str) -> Subscription:
        return self.feed.subscribe(principal.workspace_id, job_id)

    def opening(self, principal: Principal, job_id: str, after_seq: int) -> list[JobEvent]:
        """An event stream's first read. Every job has its `queued` event, so finding none means
        checking that the job exists in the caller's workspace (NotFound otherwise)."""
        events = self.store.jobs.events_after(principal.workspace_id, job_id, after_seq)
        if not events and self.store.jobs.get(principal.workspace_id, job_id) is None:
            raise NotFound(f"no job {job_id}")
        return events

    async def follow(self, feed: Subscription, after_seq: int,
                     opening: list[JobEvent]) -> AsyncGenerator[JobEvent | StreamEnd, None]:
        """The events after `after_seq` in order: first `opening`, then as they come. Closes `feed`."""
        workspace_id, job_id = feed.key
        window, poll = self.settings.sse_window_seconds, self.settings.sse_poll_seconds
        deadline = self.clock.now() + window
        pending = opening
        try:
            while True:
                finished = False
                for event in sorted(pending, key=lambda e: e.seq):
                    if event.seq <= after_seq:
                        continue
                    if event.seq != after_seq + 1:
                        break  # a gap: the table has what is missing
                    after_seq = event.seq
                    finished = finished or event.ends_job
                    yield event
                if finished:
                    yield END
                    return
                if self.clock.now() >= deadline:
                    return
                published = await feed.wait(min(poll, max(deadline - self.clock.now(), 0)))
                if published and min(e.seq for e in published) <= after_seq + 1:
                    pending = published
                    continue
                pending = await asyncio.to_thread(self.store.jobs.events_after, workspace_id, job_id, after_seq)
                if not pending and not published:
                    job = await asyncio.to_thread(self.store.jobs.get, workspace_id, job_id)
                    if job is None or job.is_final:
                        # Final without a final event in view (e.g. events past retention): drain and end.
                        pending = await asyncio.to_thread(self.store.jobs.events_after, workspace_id, job_id,
                                                          after_seq)
                        if not pending:
                            yield END
                            return
        finally:
            feed.close()
