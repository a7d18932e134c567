"""One job's undeliverable events never block another job's, and a refused batch is never retried
as if the API were down: the worker's spool and sender against an API over real HTTP
(tests.support.runtime_api) that refuses one claim's batches while another claim's flow."""

import asyncio

import pytest

from app.contract.messages import EventBatch
from tests.support.runtime_api import FakeRuntimeApi
from workers.api_client import RuntimeApiClient
from workers.event_sender import BATCH_MAX_EVENTS, UNDELIVERABLE_KEY, EventSender
from workers.retry import Retry
from workers.spool import EventSpool, SpoolClaim

STUCK = SpoolClaim(claim_id="clm_job_stuck", workspace_id="ws_1", job_id="job_stuck")
FLOWING = SpoolClaim(claim_id="clm_job_flowing", workspace_id="ws_1", job_id="job_flowing")
BAD_SEQ = 7


@pytest.fixture
def api():
    with FakeRuntimeApi() as running:
        running.claims.update({STUCK.job_id: STUCK.claim_id, FLOWING.job_id: FLOWING.claim_id})
        yield running


def _spool(tmp_path, stuck_events: int = 60, flowing_events: int = 5) -> EventSpool:
    spool = EventSpool(tmp_path)
    for claim, count in ((STUCK, stuck_events), (FLOWING, flowing_events)):
        spool.open(claim, next_seq=1)
        for index in range(count):
            spool.append(claim.claim_id, "progress", "running", f"step {index}", {"index": index})
        spool.append(claim.claim_id, "job", "complete", data={"result": {"ok": True}})
    return spool


async def _sending(spool: EventSpool, api: FakeRuntimeApi, scenario, **callbacks):
    client = RuntimeApiClient(api.url, runtime_token=api.registered().token)
    sender = EventSender(spool, client, Retry(max_seconds=0.05, first_seconds=0.01), **callbacks)
    running = asyncio.create_task(sender.run())
    try:
        return await scenario(sender)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await client.aclose()


def _refuse_the_bad_event(status: int):
    """The API refuses any batch holding event BAD_SEQ as it was sent (an oversized or invalid one)."""

    def answer(batch: EventBatch):
        if any(e.seq == BAD_SEQ and UNDELIVERABLE_KEY not in e.data for e in batch.events):
            return status, "event 7 is larger than the API stores" if status == 413 else "event 7 is invalid"
        return None

    return answer


@pytest.mark.parametrize("status", [413, 422, 400])
def test_a_refused_event_is_replaced_by_a_marker_and_neither_job_stalls(tmp_path, api, status):
    api.event_answers[STUCK.job_id] = _refuse_the_bad_event(status)
    spool = _spool(tmp_path)

    async def scenario(sender):
        return await asyncio.gather(sender.finish(STUCK.claim_id), sender.finish(FLOWING.claim_id))

    assert asyncio.run(_sending(spool, api, scenario)) == [True, True]

    stuck = api.events[STUCK.job_id]
    assert [e.seq for e in stuck] == list(range(1, 62))  # no gap: the marker holds seq 7
    marker = stuck[BAD_SEQ - 1]
    assert (marker.step, marker.status.value) == ("progress", "running")
    assert marker.data[UNDELIVERABLE_KEY]["status"] == status and str(status) in marker.message
    assert api.statuses(STUCK.job_id)[-1] == ("job", "complete")  # the final event still ended the job
    assert [e.seq for e in api.events[FLOWING.job_id]] == list(range(1, 7))
    # Split until the bad event went alone, then its marker: a handful of refusals, not a retry loop.
    refusals = [events for job, events, answered in api.refused_batches if job == STUCK.job_id]
    assert refusals[-1] == 1 and len(refusals) <= 7
    assert list(tmp_path.iterdir()) == []


def test_a_marker_the_api_refuses_too_is_skipped(tmp_path, api):
    api.event_answers[STUCK.job_id] = lambda batch: (422, "no") if any(e.seq == BAD_SEQ for e in batch.events) \
        else None
    spool = _spool(tmp_path, stuck_events=10)

    async def scenario(sender):
        return await sender.finish(STUCK.claim_id)

    assert asyncio.run(_sending(spool, api, scenario)) is True
    assert [e.seq for e in api.events[STUCK.job_id]] == [s for s in range(1, 12) if s != BAD_SEQ]


def test_a_batch_the_api_fails_on_with_500_is_retried_smaller_until_it_goes_through(tmp_path, api):
    # As the API did with 100 events: one write too many for its transaction, a 500 every time.
    api.event_answers[STUCK.job_id] = lambda batch: (500, "internal error") if len(batch.events) > 12 else None
    spool = _spool(tmp_path)

    async def scenario(sender):
        return await asyncio.gather(sender.finish(STUCK.claim_id), sender.finish(FLOWING.claim_id))

    assert asyncio.run(_sending(spool, api, scenario)) == [True, True]
    assert [e.seq for e in api.events[STUCK.job_id]] == list(range(1, 62))
    assert {answered for _, _, answered in api.refused_batches} == {500}
    assert [events for _, events, _ in api.refused_batches][:2] == [BATCH_MAX_EVENTS, BATCH_MAX_EVENTS // 2]


def test_while_one_job_gets_only_500s_the_others_events_flow_and_it_catches_up_later(tmp_path, api):
    api.event_answers[STUCK.job_id] = lambda batch: (500, "internal error")
    spool = _spool(tmp_path)

    async def scenario(sender):
        stuck = asyncio.ensure_future(sender.finish(STUCK.claim_id))
        flowing = await sender.finish(FLOWING.claim_id)
        seen_while_stuck = (flowing, stuck.done(), list(api.events.get(STUCK.job_id, [])))
        flushed_while_stuck = await sender.flush(0.2)
        del api.event_answers[STUCK.job_id]  # the API recovers
        return seen_while_stuck, flushed_while_stuck, await stuck

    (flowing, stuck_done, stuck_events), flushed, stuck = asyncio.run(_sending(spool, api, scenario))
    assert flowing is True and stuck_done is False and stuck_events == []
    assert flushed is False  # a 5xx is the API's trouble: kept, not dropped
    assert stuck is True and [e.seq for e in api.events[STUCK.job_id]] == list(range(1, 62))


@pytest.mark.parametrize("status", [404, 403, 409])
def test_a_job_the_api_disowns_has_its_events_dropped_and_its_job_stopped(tmp_path, api, status):
    api.event_answers[STUCK.job_id] = lambda batch: (status, "not this runtime's job")
    spool = _spool(tmp_path)
    dropped: list[str] = []

    async def scenario(sender):
        return await asyncio.gather(sender.finish(STUCK.claim_id), sender.finish(FLOWING.claim_id))

    assert asyncio.run(_sending(spool, api, scenario, on_dropped=dropped.append)) == [False, True]
    assert dropped == [STUCK.claim_id]
    assert len([1 for job, _, _ in api.refused_batches if job == STUCK.job_id]) == 1
    assert [e.seq for e in api.events[FLOWING.job_id]] == list(range(1, 7))
    assert list(tmp_path.iterdir()) == []
