"""Model pull throughput through the worker's executor beside a raw `snapshot_download` (issue 12).

The repo: the sharded Llama of `tests.support.model_repos` (three safetensors shards of `--shard-mb`
each, their index, config and tokenizer, plus the files an engine does not need), served by the
local hub in this process, first as fast as loopback allows (on a small machine the hub, the
download and the hashing then share its CPUs), then at `--link-mb-per-s` per connection (a network
link, where the download waits on the wire, as it does on a runtime). Each round pulls it into a
fresh cache through every leg, in a rotating order so that drift on the machine falls on all alike:

- `raw`: `huggingface_hub.snapshot_download` at the same commit with the same files (its own
  defaults otherwise: 8 download threads, its progress bars off) — the baseline.
- `executor`: a `model.pull` job run by `workers.executors.models` as the worker runs it: resolve
  and pin, disk check, the same `snapshot_download` feeding its progress meter, every file hashed
  (sha256 / git blob id) while it downloads, the verified record written; timed from start to its
  result (`attached`). Its CPU time is reported beside raw's: the hashing is work raw does not do.
- a `stack` leg (attach through the local stack's API, timed to `attached`) joins `LEGS` once the
  API serves `/v1/model-profiles/{id}/attach`: a function taking the round's `Context`, returning
  a `Pull`.

Figures: median seconds and MB/s per leg, the executor/raw throughput ratio (goal ≥ 0.95), and the
progress events the executor emitted per GB pulled. Then the resume cases, on a repo served at
`--resume-mb-per-s` so that the interruption lands mid-file:
- a connection cut at 50 % of a shard: bytes the hub sent twice (huggingface_hub resumes with a
  Range request; goal 0);
- a pull cancelled at 50 % of its bytes, then pulled again: bytes sent again, beside the bytes of
  the files that had not finished when it stopped (goal: only those; huggingface_hub 2.x discards
  partial files, so each unfinished file is fetched again whole).

Usage: python bench/model_pull.py [--rounds 3] [--shard-mb 64] [--link-mb-per-s 20]
"""

import argparse
import asyncio
import glob
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

from huggingface_hub import constants, snapshot_download  # noqa: E402

from tests.support.hub import LocalHub  # noqa: E402
from tests.support.model_jobs import ModelJob, model_host  # noqa: E402
from tests.support.model_repos import DEMO_SHARDED, ENGINE_FILES, add_model_repos  # noqa: E402
from workers.models import pull as model_pull  # noqa: E402

TARGET_RATIO = 0.95
MB = 1_000_000


@dataclass
class Context:
    hub: LocalHub
    commit: str
    scratch: Path
    round: int


@dataclass
class Pull:
    seconds: float
    cpu_seconds: float  # of this whole process (the in-process hub included)
    bytes: int
    events: int = 0  # progress events, for the legs that emit them


async def raw(ctx: Context) -> Pull:
    cache = ctx.scratch / f"raw-{ctx.round}"
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.to_thread(snapshot_download, DEMO_SHARDED, revision=ctx.commit, cache_dir=cache,
                            endpoint=ctx.hub.url, token=False, allow_patterns=[glob.escape(p) for p in ENGINE_FILES])
    return Pull(time.perf_counter() - started, time.process_time() - cpu, _engine_bytes(ctx.hub))


async def executor(ctx: Context) -> Pull:
    job = ModelJob("model.pull", {"model": DEMO_SHARDED, "revision": ctx.commit}, ctx.scratch / "work",
                   host=model_host(ctx.scratch / f"executor-{ctx.round}"))
    started, cpu = time.perf_counter(), time.process_time()
    result = await job.start().result(timeout=600)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    assert result["bytes_downloaded"] == result["bytes_total"] == _engine_bytes(ctx.hub), result
    return Pull(seconds, cpu_seconds, result["bytes_downloaded"],
                len([e for e in job.events if e.step == "downloading"]))


LEGS: dict[str, Callable[[Context], Awaitable[Pull]]] = {"raw": raw, "executor": executor}


def _engine_bytes(hub: LocalHub) -> int:
    files = hub.files(DEMO_SHARDED)
    return sum(len(files[path]) for path in ENGINE_FILES)


# --- resume ------------------------------------------------------------------------------------


def _sent(hub: LocalHub, since: int) -> int:
    """Body bytes the hub sent for file downloads since request number `since`."""
    return sum(r.bytes_sent for r in hub.requests[since:] if r.method == "GET" and "/resolve/" in r.path)


def _cached_bytes(directory: Path) -> int:
    """Bytes in a cache's blobs, the partial files included: how far a pull has come."""
    return sum(path.stat().st_size for path in directory.rglob("blobs/*") if path.is_file())


async def resume_after_connection_cut(hub: LocalHub, scratch: Path) -> dict:
    shard = "model-00002-of-00003.safetensors"
    size = len(hub.files(DEMO_SHARDED)[shard])
    hub.interrupt_next_download(DEMO_SHARDED, shard, after_bytes=size // 2)
    host = model_host(scratch / "cut")
    before = len(hub.requests)
    await ModelJob("model.pull", {"model": DEMO_SHARDED}, scratch / "work", host=host).start().result(timeout=600)
    await asyncio.sleep(0.2)  # the hub records a request once its handler returns
    return {"sent": _sent(hub, before), "needed": _engine_bytes(hub)}


async def resume_after_stop(hub: LocalHub, scratch: Path) -> dict:
    host = model_host(scratch / "stopped")
    needed = _engine_bytes(hub)
    before = len(hub.requests)
    first = ModelJob("model.pull", {"model": DEMO_SHARDED}, scratch / "work", host=host).start()
    while _cached_bytes(host.hub_cache) < needed // 2:
        await asyncio.sleep(0.01)
    await first.cancel()
    await asyncio.sleep(1)  # the stopped pull's threads end at their next chunk, deleting their partial files
    snapshot = next((host.hub_cache / "models--berth-demo--sharded-llama" / "snapshots").iterdir())
    finished = sum(path.stat().st_size for path in snapshot.rglob("*") if path.is_file())
    middle = len(hub.requests)
    second = await ModelJob("model.pull", {"model": DEMO_SHARDED}, scratch / "work2", job_id="job-2",
                            host=host).start().result(timeout=600)
    assert second["cached"] is False
    await asyncio.sleep(0.2)
    return {"first_sent": _sent(hub, before) - _sent(hub, middle), "second_sent": _sent(hub, middle),
            "unfinished": needed - finished, "needed": needed}


# --- the run -------------------------------------------------------------------------------------


async def run(rounds: int, shard_mb: float, link_mb_per_s: float, resume_mb_per_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="berth-bench-pull-") as scratch_dir, LocalHub() as hub:
        scratch = Path(scratch_dir)
        add_model_repos(hub, shard_bytes=int(shard_mb * MB))
        os.environ.update(hub.environment())
        constants.HF_HUB_DISABLE_XET = True
        commit = hub.head_sha(DEMO_SHARDED)
        size = _engine_bytes(hub)
        print(f"model pull: {DEMO_SHARDED}, {len(ENGINE_FILES)} files an engine needs, {size / MB:.1f} MB;"
              f" {rounds} rounds; {platform.python_version()} on {os.cpu_count()} CPUs;"
              f" executor download threads {model_pull.DOWNLOAD_WORKERS}")
        for link, rate in (("loopback", None), (f"{link_mb_per_s:g} MB/s per connection", link_mb_per_s)):
            hub.set_bandwidth(DEMO_SHARDED, rate * MB if rate else None)
            results = await _rounds(Context(hub, commit, scratch / link.split()[0], 0), rounds)
            _report(link, results, size)
        hub.set_bandwidth(DEMO_SHARDED, resume_mb_per_s * MB)
        cut = await resume_after_connection_cut(hub, scratch)
        print(f"resume, connection cut at 50 % of a shard: hub sent {cut['sent'] / MB:.2f} MB for"
              f" {cut['needed'] / MB:.2f} MB needed: {(cut['sent'] - cut['needed']) / MB:.2f} MB fetched twice"
              f" (huggingface_hub resumes from its last {constants.DOWNLOAD_CHUNK_SIZE / MB:.1f} MB chunk)")
        stop = await resume_after_stop(hub, scratch)
        print(f"resume, pull stopped at 50 % then pulled again: {stop['first_sent'] / MB:.2f} MB before the stop;"
              f" the next pull fetched {stop['second_sent'] / MB:.2f} MB; the files unfinished at the stop hold"
              f" {stop['unfinished'] / MB:.2f} MB (goal: fetch only those:"
              f" {'met' if stop['second_sent'] <= stop['unfinished'] else 'NOT met'});"
              f" fetched twice: {(stop['first_sent'] + stop['second_sent'] - stop['needed']) / MB:.2f} MB")


async def _rounds(base: Context, rounds: int) -> dict[str, list[Pull]]:
    results: dict[str, list[Pull]] = {name: [] for name in LEGS}
    names = list(LEGS)
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:
            results[name].append(await LEGS[name](Context(base.hub, base.commit, base.scratch, index)))
    return results


def _report(link: str, results: dict[str, list[Pull]], size: int) -> None:
    print(f"{link}:")
    for name, pulls in results.items():
        seconds = statistics.median(p.seconds for p in pulls)
        print(f"  {name:9s} median {seconds:6.2f} s  {size / MB / seconds:7.1f} MB/s"
              f"  cpu {statistics.median(p.cpu_seconds for p in pulls):5.2f} s"
              f"  (each: {', '.join(f'{p.seconds:.2f}' for p in pulls)} s)")
    raw_seconds = statistics.median(p.seconds for p in results["raw"])
    for name in list(results)[1:]:
        ratio = raw_seconds / statistics.median(p.seconds for p in results[name])
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"  {name} / raw throughput: {ratio:.3f}× (goal ≥ {TARGET_RATIO}×: {verdict})")
    events = statistics.median(p.events for p in results["executor"])
    print(f"  executor progress events: {events:.0f} per pull, {events / (size / 1e9):.0f} per GB pulled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-mb", type=float, default=64, help="size of each of the three weight shards")
    parser.add_argument("--link-mb-per-s", type=float, default=20, help="hub bandwidth per connection, second pass")
    parser.add_argument("--resume-mb-per-s", type=float, default=20, help="hub bandwidth per file in the resume cases")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.rounds, arguments.shard_mb, arguments.link_mb_per_s, arguments.resume_mb_per_s))


if __name__ == "__main__":
    main()
