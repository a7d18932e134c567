"""The event spool (durable, ordered, removed once delivered, every event within the contract's
limits) and its sender for one claim, against an HTTP API played by httpx.MockTransport behind the
real runtime API client. Several claims at once, and refusals, are in test_worker_events.py."""

import asyncio
import json
import threading

import httpx
import pytest

from app.contract.messages import EVENT_DATA_MAX_BYTES, EVENT_MESSAGE_MAX_CHARS, EventBatch
from workers.api_client import RuntimeApiClient
from workers.event_sender import BATCH_MAX_BYTES, BATCH_MAX_EVENTS, EventSender
from workers.retry import Retry
from workers.spool import EventSpool, SpoolClaim, SpoolClosed

CLAIM = SpoolClaim(claim_id="clm_one", workspace_id="ws_1", job_id="job_one")
OTHER = SpoolClaim(claim_id="clm_two", workspace_id="ws_1", job_id="job_two")


def spool_files(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_events_get_consecutive_sequence_numbers_from_the_claims_first(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=7)
    for step in ("resolve", "download", "verify"):
        spool.append(CLAIM.claim_id, step, "ok", f"{step} done", {"step": step})

    pending = spool.pending(CLAIM.claim_id)
    assert [(event.seq, event.step) for event in pending] == [(7, "resolve"), (8, "download"), (9, "verify")]
    lines = (tmp_path / "clm_one.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"spool": 1, "claim_id": "clm_one", "workspace_id": "ws_1", "job_id": "job_one"}
    assert [json.loads(line)["seq"] for line in lines[1:]] == [7, 8, 9]


def test_spooled_events_survive_a_restart_and_come_back_closed(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    spool.append(CLAIM.claim_id, "job", "start")
    spool.append(CLAIM.claim_id, "pull", "running", "12 of 40 files", {"bytes": 1024})

    reopened = EventSpool(tmp_path)

    assert reopened.pending_claims() == [CLAIM]
    assert [event.model_dump() for event in reopened.pending(CLAIM.claim_id)] == [
        {"seq": 1, "step": "job", "status": "start", "message": "", "data": {}},
        {"seq": 2, "step": "pull", "status": "running", "message": "12 of 40 files", "data": {"bytes": 1024}},
    ]
    # The run that wrote them is gone: nothing more may be added under its claim.
    with pytest.raises(SpoolClosed):
        reopened.append(CLAIM.claim_id, "pull", "running")


def test_a_torn_last_line_is_skipped_on_reload(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    spool.append(CLAIM.claim_id, "job", "start")
    with open(tmp_path / "clm_one.jsonl", "a") as handle:
        handle.write('{"seq": 2, "step": "pu')  # the worker died mid-append

    reopened = EventSpool(tmp_path)

    assert [event.seq for event in reopened.pending(CLAIM.claim_id)] == [1]


def test_delivered_events_are_removed_and_a_closed_claim_disappears(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    for index in range(4):
        spool.append(CLAIM.claim_id, "step", "ok", str(index))

    assert spool.mark_delivered(CLAIM.claim_id, through_seq=2) is False
    assert [event.seq for event in spool.pending(CLAIM.claim_id)] == [3, 4]
    assert [event.seq for event in EventSpool(tmp_path).pending(CLAIM.claim_id)] == [3, 4]

    spool.append(CLAIM.claim_id, "job", "complete")
    assert spool.close(CLAIM.claim_id) is False  # still undelivered events
    assert spool.mark_delivered(CLAIM.claim_id, through_seq=5) is True
    assert spool_files(tmp_path) == []
    assert EventSpool(tmp_path).pending_claims() == []


def test_closing_a_fully_delivered_claim_removes_it_at_once(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    spool.append(CLAIM.claim_id, "job", "start")
    spool.mark_delivered(CLAIM.claim_id, through_seq=1)

    assert spool.close(CLAIM.claim_id) is True
    assert spool_files(tmp_path) == []


def test_a_dropped_claim_takes_no_more_events(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    spool.append(CLAIM.claim_id, "job", "start")

    spool.drop(CLAIM.claim_id)

    assert spool_files(tmp_path) == []
    with pytest.raises(SpoolClosed):
        spool.append(CLAIM.claim_id, "step", "ok")
    with pytest.raises(SpoolClosed):
        spool.close(CLAIM.claim_id)


def test_concurrent_appends_from_two_jobs_stay_ordered_and_complete(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    spool.open(OTHER, next_seq=10)
    per_thread = 50
    start = threading.Barrier(4)

    def emit(claim: SpoolClaim) -> None:
        start.wait()
        for index in range(per_thread):
            spool.append(claim.claim_id, "progress", "running", str(index))

    # Two threads per job, as two executor tasks emitting through asyncio.to_thread would.
    threads = [threading.Thread(target=emit, args=(claim,)) for claim in (CLAIM, OTHER, CLAIM, OTHER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reopened = EventSpool(tmp_path)
    assert [event.seq for event in reopened.pending(CLAIM.claim_id, limit=1000)] == list(range(1, 101))
    assert [event.seq for event in reopened.pending(OTHER.claim_id, limit=1000)] == list(range(10, 110))


class FakeEventsApi:
    """Answers POST .../events like the API: accepts, or fails as told, and records what came."""

    def __init__(self, failures: list[httpx.Response | Exception] | None = None, cancel_requested: bool = False):
        self.failures = list(failures or [])
        self.cancel_requested = cancel_requested
        self.batches: list[tuple[str, EventBatch]] = []
        self.authorizations: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        batch = EventBatch.model_validate_json(request.content)
        self.batches.append((request.url.path, batch))
        self.authorizations.add(request.headers["Authorization"])
        result = {"accepted": len(batch.events), "duplicates": 0, "job_status": "running",
                  "cancel_requested": self.cancel_requested}
        return httpx.Response(200, json=result)

    def delivered_seqs(self, claim_id: str) -> list[int]:
        return [event.seq for _, batch in self.batches if batch.claim_id == claim_id for event in batch.events]


def api_error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"success": False, "error": message, "status": status, "request_id": "r1"})


async def deliver(spool: EventSpool, fake: FakeEventsApi, *claims: SpoolClaim, **callbacks) -> tuple[list[bool], list]:
    """Run a sender until every given claim settles; returns finish() outcomes and callbacks seen."""
    api = RuntimeApiClient("http://api.test", runtime_token="brt_test-token", transport=httpx.MockTransport(fake))
    sender = EventSender(spool, api, Retry(max_seconds=0.01), **callbacks)
    running = asyncio.create_task(sender.run())
    try:
        return await asyncio.gather(*(sender.finish(claim.claim_id) for claim in claims))
    finally:
        running.cancel()
        await api.aclose()


def test_sender_delivers_in_order_in_batches_well_inside_the_contract_and_removes_the_spool(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    for index in range(250):
        spool.append(CLAIM.claim_id, "progress", "running", str(index))
    spool.append(CLAIM.claim_id, "job", "complete", data={"result": {"ok": True}})
    fake = FakeEventsApi()

    outcomes = asyncio.run(deliver(spool, fake, CLAIM))

    assert outcomes == [True]
    assert fake.delivered_seqs(CLAIM.claim_id) == list(range(1, 252))
    assert BATCH_MAX_EVENTS == 50
    assert [len(batch.events) for _, batch in fake.batches] == [50, 50, 50, 50, 50, 1]
    assert {path for path, _ in fake.batches} == {"/v1/cloud/runtimes/jobs/ws_1/job_one/events"}
    assert fake.authorizations == {"Bearer brt_test-token"}
    assert spool_files(tmp_path) == []


def test_sender_retries_while_the_api_is_unreachable_and_loses_nothing(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    for index in range(3):
        spool.append(CLAIM.claim_id, "progress", "running", str(index))
    fake = FakeEventsApi(
        failures=[httpx.ConnectError("connection refused"), api_error(503, "unavailable"), api_error(500, "boom")]
    )

    outcomes = asyncio.run(deliver(spool, fake, CLAIM))

    assert outcomes == [True]
    assert fake.failures == []
    assert fake.delivered_seqs(CLAIM.claim_id) == [1, 2, 3]


def test_sender_delivers_leftovers_of_a_previous_run_with_their_claim(tmp_path):
    previous = EventSpool(tmp_path)
    previous.open(CLAIM, next_seq=4)
    previous.append(CLAIM.claim_id, "progress", "running")
    previous.append(CLAIM.claim_id, "job", "complete")
    fake = FakeEventsApi()

    async def scenario() -> bool:
        spool = EventSpool(tmp_path)  # the restarted worker
        api = RuntimeApiClient("http://api.test", runtime_token="brt_test-token", transport=httpx.MockTransport(fake))
        sender = EventSender(spool, api, Retry(max_seconds=0.01))
        running = asyncio.create_task(sender.run())
        try:
            return await sender.flush(None)
        finally:
            running.cancel()
            await api.aclose()

    assert asyncio.run(scenario()) is True
    assert [(batch.claim_id, [e.seq for e in batch.events]) for _, batch in fake.batches] == [("clm_one", [4, 5])]
    assert spool_files(tmp_path) == []


def test_a_cancel_request_reported_by_the_api_reaches_the_job(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    spool.append(CLAIM.claim_id, "job", "start")
    cancelled: list[str] = []

    asyncio.run(deliver(spool, FakeEventsApi(cancel_requested=True), CLAIM, on_cancel_requested=cancelled.append))

    assert cancelled == ["clm_one"]


def test_a_batch_of_large_events_stays_within_the_byte_limit(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    for index in range(12):
        spool.append(CLAIM.claim_id, "progress", "running", data={"blob": "x" * 100_000, "index": index})
    fake = FakeEventsApi()

    assert asyncio.run(deliver(spool, fake, CLAIM)) == [True]

    assert fake.delivered_seqs(CLAIM.claim_id) == list(range(1, 13))
    assert all(len(batch.model_dump_json()) <= BATCH_MAX_BYTES for _, batch in fake.batches)
    assert len(fake.batches) > 1


def test_an_oversized_message_or_data_is_cut_with_a_marker_before_it_is_spooled(tmp_path):
    spool = EventSpool(tmp_path)
    spool.open(CLAIM, next_seq=1)
    huge = {"rows": ["y" * 1000] * 200}  # ~200 KB of JSON

    long_message = spool.append(CLAIM.claim_id, "log", "running", "z" * 10_000)
    big_progress = spool.append(CLAIM.claim_id, "scan", "ok", "scanned", huge)
    big_result = spool.append(CLAIM.claim_id, "job", "complete", "", {"result": huge})

    assert len(long_message.message) == EVENT_MESSAGE_MAX_CHARS and long_message.message.endswith("[truncated]")
    marker = big_progress.data
    assert marker["truncated"] is True and marker["bytes"] > EVENT_DATA_MAX_BYTES
    assert marker["preview"].startswith('{"rows":["yyy') and len(marker["preview"]) == 2000
    assert big_result.data["result"]["truncated"] is True  # still a result, so the job completes with it
    # What was spooled is what goes: the file holds the cut events, each within the limit.
    reopened = EventSpool(tmp_path).pending(CLAIM.claim_id)
    assert [event.model_dump() for event in reopened] == [e.model_dump() for e in (long_message, big_progress,
                                                                                    big_result)]
    assert all(len(json.dumps(event.data)) <= EVENT_DATA_MAX_BYTES for event in reopened)
