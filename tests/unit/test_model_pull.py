"""Model pulls at the worker level: the real executors and huggingface_hub against the local hub,
a real cache on disk. Nothing of the pull is mocked; faults come from the hub itself."""

import asyncio
import json
import logging
from pathlib import Path

import pytest
from huggingface_hub import constants

from app.contract.models import InstallationStatus
from tests.support.hub import DEMO_GATED, DEMO_LLAMA, GRANTED_TOKEN, make_demo_hub
from tests.support.model_jobs import ModelJob, model_host
from tests.support.model_repos import DEMO_OVERSIZED, DEMO_PRIVATE, DEMO_SHARDED, ENGINE_FILES
from workers.executors import models as model_executors
from workers.executors.base import ExecutorError, WorkerHost
from workers.executors.registry import ExecutorRegistry
from workers.models.files import VerifiedSnapshot
from workers.models.host import ModelHost

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as hub:
        yield hub


@pytest.fixture(autouse=True)
def hub_environment(hub, monkeypatch, tmp_path):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    yield
    hub.unreachable = False
    hub.honour_ranges = True
    for repo in (DEMO_SHARDED, DEMO_LLAMA, DEMO_GATED):
        hub.set_bandwidth(repo, None)
    for path in ENGINE_FILES:
        hub.corrupt(DEMO_SHARDED, path, False)


@pytest.fixture
def host(tmp_path) -> ModelHost:
    return model_host(tmp_path, volume_roots=((tmp_path / "volumes").resolve(),))


def pull_job(host: ModelHost, tmp_path: Path, payload: dict, job_id: str = "job-1") -> ModelJob:
    return ModelJob("model.pull", payload, tmp_path / job_id, job_id=job_id, host=host)


def downloads(hub, since: int, repo: str) -> list:
    """GETs of files of `repo` (not metadata) after request number `since`."""
    return [r for r in hub.requests[since:] if r.method == "GET" and f"/{repo}/resolve/" in r.path]


def file_of(request) -> str:
    return request.path.split("/resolve/", 1)[1].split("/", 1)[1]


async def test_a_pull_fetches_only_what_the_engine_needs_at_the_pinned_commit_and_verifies_it(hub, host, tmp_path):
    before = len(hub.requests)
    job = pull_job(host, tmp_path, {"model": DEMO_SHARDED, "installation_id": "inst-1"}).start()

    result = await job.result()

    commit = hub.head_sha(DEMO_SHARDED)
    assert job.statuses() == ["checking", "downloading", "verifying", "attached"]
    assert result["commit"] == commit and result["cached"] is False
    fetched = downloads(hub, before, DEMO_SHARDED)
    assert {file_of(r) for r in fetched} == ENGINE_FILES
    assert all(f"/resolve/{commit}/" in r.path for r in fetched)  # pinned: never `main` once resolved
    snapshot = Path(result["local_path"])
    files = hub.files(DEMO_SHARDED)
    assert {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()} == ENGINE_FILES
    assert all((snapshot / path).read_bytes() == files[path] for path in ENGINE_FILES)
    assert result["bytes_total"] == result["bytes_downloaded"] == sum(len(files[p]) for p in ENGINE_FILES)
    assert VerifiedSnapshot.load(host.state_dir, DEMO_SHARDED, commit) is not None
    last = job.events[-1].data
    assert (last["installation_status"], last["progress"], last["installation_id"]) == ("attached", 100, "inst-1")
    assert (last["bytes_done"], last["files_done"]) == (last["bytes_total"], len(ENGINE_FILES))
    progress = [event.data["progress"] for event in job.events]
    assert progress == sorted(progress)


async def test_download_progress_reports_bytes_done_of_total_at_most_twice_a_second(hub, host, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # so that bytes arrive in many pieces
    hub.set_bandwidth(DEMO_SHARDED, 16 * 1024)  # per request: about three seconds for the shards
    job = pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start()

    await job.result()

    ticks = [e for e in job.events if e.step == "downloading" and e.status == "running" and " of " in e.message]
    done = [e.data["bytes_done"] for e in ticks]
    assert len(ticks) >= 3 and done == sorted(done) and len(set(done)) == len(done)
    assert {e.data["bytes_total"] for e in ticks} == {sum(len(hub.files(DEMO_SHARDED)[p]) for p in ENGINE_FILES)}
    assert all(later.at - earlier.at >= 0.5 for earlier, later in zip(ticks, ticks[1:], strict=False))
    assert all(1 <= e.data["progress"] <= 90 for e in ticks)


async def test_a_model_too_big_for_the_disk_is_refused_before_anything_is_downloaded(hub, host, tmp_path):
    before = len(hub.requests)
    job = pull_job(host, tmp_path, {"model": DEMO_OVERSIZED}).start()

    with pytest.raises(ExecutorError, match="not enough disk"):
        await job.result()

    failed = job.events[-1]
    assert (failed.step, failed.status, failed.data["failure"]) == ("failed", "error", "disk_full")
    assert "PB" in failed.message and "free" in failed.message
    assert downloads(hub, before, DEMO_OVERSIZED) == []
    assert not (host.hub_cache / "models--berth-demo--oversized-llama" / "snapshots").exists()


async def test_a_connection_cut_mid_file_resumes_where_it_broke(hub, host, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    shard = "model-00002-of-00003.safetensors"
    hub.interrupt_next_download(DEMO_SHARDED, shard, after_bytes=8192)
    before = len(hub.requests)

    result = await pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start().result()

    gets = [(r.range, r.status, r.bytes_sent) for r in downloads(hub, before, DEMO_SHARDED) if file_of(r) == shard]
    size = len(hub.files(DEMO_SHARDED)[shard])
    assert gets == [(None, 200, 8192), ("bytes=8192-", 206, size - 8192)]  # nothing fetched twice
    assert result["bytes_downloaded"] == result["bytes_total"]


async def test_a_resumed_download_that_the_server_starts_over_is_verified_from_its_new_first_byte(
        hub, host, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    shard = "model-00001-of-00003.safetensors"
    hub.interrupt_next_download(DEMO_SHARDED, shard, after_bytes=16384)
    hub.honour_ranges = False
    before = len(hub.requests)

    result = await pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start().result()

    gets = [(r.range, r.status) for r in downloads(hub, before, DEMO_SHARDED) if file_of(r) == shard]
    assert gets == [(None, 200), ("bytes=16384-", 200)]  # the resume was answered with the whole file
    assert (Path(result["local_path"]) / shard).read_bytes() == hub.files(DEMO_SHARDED)[shard]


async def test_a_hub_that_goes_away_mid_download_fails_clearly_and_the_next_pull_fetches_only_what_was_missing(
        hub, host, tmp_path):
    hub.interrupt_next_download(DEMO_SHARDED, "model-00003-of-00003.safetensors", after_bytes=4096,
                                then_unreachable=True)
    before = len(hub.requests)
    first = pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start()

    with pytest.raises(ExecutorError, match="could not be reached"):
        await first.result(timeout=120)
    assert first.events[-1].data["failure"] == "hub_unreachable"
    files = hub.files(DEMO_SHARDED)
    finished = {file_of(r) for r in downloads(hub, before, DEMO_SHARDED) if r.bytes_sent == len(files[file_of(r)])}
    assert VerifiedSnapshot.load(host.state_dir, DEMO_SHARDED, hub.head_sha(DEMO_SHARDED)) is None

    hub.unreachable = False
    middle = len(hub.requests)
    result = await pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-2").start().result()

    refetched = {file_of(r) for r in downloads(hub, middle, DEMO_SHARDED)}
    assert refetched == ENGINE_FILES - finished and "model-00003-of-00003.safetensors" in refetched
    assert result["bytes_downloaded"] == sum(len(files[path]) for path in refetched)


async def test_a_corrupted_file_fails_verification_and_is_fetched_anew_by_the_next_pull(hub, host, tmp_path):
    shard = "model-00001-of-00003.safetensors"
    hub.corrupt(DEMO_SHARDED, shard)
    job = pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start()

    with pytest.raises(ExecutorError, match="verification failed"):
        await job.result()

    failed = job.events[-1]
    assert failed.data["failure"] == "verification_failed" and shard in failed.message and "sha256" in failed.message
    commit = hub.head_sha(DEMO_SHARDED)
    assert VerifiedSnapshot.load(host.state_dir, DEMO_SHARDED, commit) is None
    snapshot = host.hub_cache / "models--berth-demo--sharded-llama" / "snapshots" / commit
    assert not (snapshot / shard).exists()

    hub.corrupt(DEMO_SHARDED, shard, False)
    before = len(hub.requests)
    result = await pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-2").start().result()

    assert shard in {file_of(r) for r in downloads(hub, before, DEMO_SHARDED)}
    assert (Path(result["local_path"]) / shard).read_bytes() == hub.files(DEMO_SHARDED)[shard]


async def test_two_pulls_of_the_same_revision_download_it_once(hub, host, tmp_path):
    before = len(hub.requests)
    first = pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-1").start()
    second = pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-2").start()

    results = await asyncio.gather(first.result(), second.result())

    assert sorted(result["cached"] for result in results) == [False, True]
    assert results[0]["local_path"] == results[1]["local_path"]
    per_file = [file_of(r) for r in downloads(hub, before, DEMO_SHARDED)]
    assert sorted(per_file) == sorted(ENGINE_FILES)  # each once

    again = len(hub.requests)
    third = await pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-3").start().result()
    assert third["cached"] is True and third["bytes_downloaded"] == 0
    assert downloads(hub, again, DEMO_SHARDED) == []


@pytest.mark.parametrize(("token", "expected"), [
    (None, "is gated: add a Hugging Face credential"),
    ("hf_wrong_token", "the token given has no access"),
    (GRANTED_TOKEN, None),
])
async def test_a_gated_repo_is_pulled_only_with_a_token_that_was_granted_access(hub, host, tmp_path, caplog, token,
                                                                                 expected):
    caplog.set_level(logging.DEBUG)
    before = len(hub.requests)
    payload = {"model": DEMO_GATED, **({"token": token} if token else {})}
    job = pull_job(host, tmp_path, payload).start()

    if expected is None:
        result = await job.result()
        assert result["cached"] is False and "model.safetensors" in {
            file_of(r) for r in downloads(hub, before, DEMO_GATED)}
    else:
        with pytest.raises(ExecutorError, match=expected):
            await job.result()
        assert job.events[-1].data["failure"] == "gated"
        assert [r for r in downloads(hub, before, DEMO_GATED) if r.status == 200] == []
    if token:
        assert token not in json.dumps([e.__dict__ for e in job.events], default=str)
        assert token not in caplog.text


@pytest.mark.parametrize(("token", "failure"), [(None, "not_found"), ("hf_wrong_token", "not_found"),
                                                (GRANTED_TOKEN, None)])
async def test_a_private_repo_is_invisible_without_its_token(hub, host, tmp_path, token, failure):
    job = pull_job(host, tmp_path, {"model": DEMO_PRIVATE, **({"token": token} if token else {})}).start()

    if failure is None:
        assert (await job.result())["commit"] == hub.head_sha(DEMO_PRIVATE)
    else:
        with pytest.raises(ExecutorError, match="not found on the hub"):
            await job.result()
        assert job.events[-1].data["failure"] == failure


async def test_the_cache_of_a_gated_repo_is_not_a_way_around_its_gate(hub, host, tmp_path):
    await pull_job(host, tmp_path, {"model": DEMO_GATED, "token": GRANTED_TOKEN}).start().result()
    job = pull_job(host, tmp_path, {"model": DEMO_GATED}, job_id="job-2").start()

    with pytest.raises(ExecutorError, match="gated"):
        await job.result()


async def test_a_missing_revision_fails_clearly(hub, host, tmp_path):
    job = pull_job(host, tmp_path, {"model": DEMO_SHARDED, "revision": "v9-does-not-exist"}).start()

    with pytest.raises(ExecutorError, match="revision 'v9-does-not-exist' not found"):
        await job.result()
    assert job.events[-1].data["failure"] == "revision_not_found"


async def test_cancelling_a_pull_mid_download_stops_it_and_records_nothing(hub, host, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.set_bandwidth(DEMO_SHARDED, 16 * 1024)
    job = pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start()
    await job.until(lambda e: e.step == "downloading" and e.data.get("bytes_done", 0) > 0)

    assert await job.cancel() == {"cancelled": True}

    commit = hub.head_sha(DEMO_SHARDED)
    assert VerifiedSnapshot.load(host.state_dir, DEMO_SHARDED, commit) is None
    blobs = host.hub_cache / "models--berth-demo--sharded-llama" / "blobs"
    for _ in range(200):  # the download threads stop at their next chunk and delete their partial files
        if not list(blobs.glob("*.incomplete")):
            break
        await asyncio.sleep(0.05)
    assert list(blobs.glob("*.incomplete")) == []
    hub.set_bandwidth(DEMO_SHARDED, None)
    assert (await pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-2").start().result())["cached"] is False


async def test_a_mounted_volume_under_an_allowed_root_is_checked_not_downloaded(hub, host, tmp_path):
    volume = tmp_path / "volumes" / "llama"
    volume.mkdir(parents=True)
    for path, content in hub.files(DEMO_LLAMA).items():
        (volume / path).write_bytes(content)

    job = pull_job(host, tmp_path, {"install_mode": "mount_volume", "local_path": str(volume)})
    result = await job.start().result()

    assert result["local_path"] == str(volume.resolve()) and result["bytes_downloaded"] == 0


@pytest.mark.parametrize(("make", "reason"), [
    (lambda tmp: tmp / "elsewhere", "outside this runtime's model volumes"),
    (lambda tmp: tmp / "volumes" / "missing", "not a directory"),
    (lambda tmp: tmp / "volumes" / "no-weights", "no safetensors or .bin weights"),
])
async def test_a_mounted_volume_that_is_not_an_allowed_model_is_refused(host, tmp_path, make, reason):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.json").write_text("{}")
    (tmp_path / "volumes" / "no-weights").mkdir(parents=True)
    (tmp_path / "volumes" / "no-weights" / "config.json").write_text("{}")
    job = pull_job(host, tmp_path, {"install_mode": "mount_volume", "local_path": str(make(tmp_path))}).start()

    with pytest.raises(ExecutorError, match=reason):
        await job.result()
    assert job.events[-1].data["failure"] == "volume_invalid"


async def test_external_endpoints_are_not_worker_jobs(host, tmp_path):
    job = pull_job(host, tmp_path, {"install_mode": "external_endpoint", "model": DEMO_LLAMA}).start()

    with pytest.raises(ExecutorError, match="served by the API itself") as refused:
        await job.result()
    assert refused.value.code == "bad_request" and job.events == []


async def test_evicting_a_revision_frees_its_files_unless_a_running_job_uses_it(hub, host, tmp_path):
    result = await pull_job(host, tmp_path, {"model": DEMO_SHARDED}).start().result()
    commit, snapshot = result["commit"], Path(result["local_path"])
    holder = pull_job(host, tmp_path, {"model": DEMO_SHARDED}, job_id="job-live")
    evict = holder.control("model.evict", {"model": DEMO_SHARDED, "commit": commit})
    # As the worker answers it: the registry gives the handler the worker's host.
    registry = ExecutorRegistry.load(("workers.executors.models",), WorkerHost(models=host))
    answer = registry.control_handlers["model.evict"]

    from app.contract.models import ModelPullPayload
    from workers.models.installation import LIVE, Installation
    live = Installation(holder.ctx, ModelPullPayload(model=DEMO_SHARDED))
    live.facts["commit"] = commit
    LIVE["job-live"] = live
    try:
        refused = await answer(evict)
    finally:
        LIVE.pop("job-live")
    evicted = await answer(evict)
    again = await answer(evict)

    assert refused == {"evicted": False, "freed_bytes": 0, "reason": "in use by model job job-live on this runtime"}
    assert evicted["evicted"] is True and evicted["freed_bytes"] >= result["bytes_total"]
    assert not snapshot.exists() and VerifiedSnapshot.load(host.state_dir, DEMO_SHARDED, commit) is None
    assert again["evicted"] is False and "not cached" in again["reason"]


async def test_status_answers_for_a_running_pull_of_this_workspace_only(hub, host, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.set_bandwidth(DEMO_SHARDED, 32 * 1024)
    job = pull_job(host, tmp_path, {"model": DEMO_SHARDED, "installation_id": "inst-7"}).start()
    await job.until_status(InstallationStatus.downloading.value)

    state = await model_executors.status(job.control("model.status"))
    with pytest.raises(ExecutorError) as other_workspace:
        await model_executors.status(job.control("model.status", workspace_id="ws-other"))
    await job.cancel()

    assert state["installation_status"] == "downloading" and state["installation_id"] == "inst-7"
    assert state["job_id"] == "job-1" and state["commit"] == hub.head_sha(DEMO_SHARDED)
    assert other_workspace.value.code == "not_running"
