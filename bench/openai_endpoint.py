"""The workspace's OpenAI-compatible endpoint: what berth adds to a chat completion (issue 12).

The stack: the local stack with one worker serving its direct control endpoint on loopback (as
`berth up` runs it), a model attached through `/v1/model-profiles/{id}/attach` and served by the
fake vLLM (`tests/support/fake_engine.py`, the same OpenAI server shape vLLM has). Two legs, in
alternation so drift on the machine falls on both alike, each with its own kept-alive httpx client:

- `direct`: `POST http://127.0.0.1:<engine port>/v1/chat/completions`, the engine itself (the port
  from the installation's `ready` event): the baseline.
- `berth`: `POST <api>/openai/v1/chat/completions` with an API key as `Authorization: Bearer`:
  authentication, routing by `model` to the ready installation, the signed `model.proxy` control
  request to the worker, the worker's request to the engine, and back.

Both `stream: false` (the answer buffered in a ControlReply over `/control`) and `stream: true` (the
worker's `/control/stream` relaying the engine's Server-Sent Events; timed to the last byte) are
measured. Figures: p50 and p95 of each leg and the overhead (berth − direct) at each; goal: ≤ 15 ms
at p50 on the direct channel. On a small, shared machine the wall times follow its load (a berth
request crosses three processes, a direct one one), so the CPU time each leg costs is reported
too: this process's (the client, and for `berth` the API) and the worker's, per request.

Usage: python bench/openai_endpoint.py [--requests 300] [--warmup 20]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402

from app.contract.models import ModelProgress  # noqa: E402
from bench._stack import percentile, running_stack, running_worker  # noqa: E402
from tests.e2e.conftest import new_account  # noqa: E402
from tests.support.hub import DEMO_LLAMA, make_demo_hub  # noqa: E402
from tests.support.model_api import attach, create_profile, wait_for_installation  # noqa: E402
from tests.support.model_jobs import fake_vllm_environment  # noqa: E402

GOAL_MS = 15.0


def body(stream: bool) -> dict:
    return {"model": DEMO_LLAMA, "stream": stream, "max_tokens": 16,
            "messages": [{"role": "user", "content": "what does berth add to a request?"}]}


def timed(client: httpx.Client, url: str, payload: dict, headers: dict) -> tuple[float, float]:
    """Seconds to the first byte of the body and to its last."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json=payload, headers=headers) as response:
        for piece in response.iter_raw():
            if first is None and piece:
                first = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.read()!r}")
    last = time.perf_counter() - started
    return first if first is not None else last, last


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(requests: int, warmup: int) -> dict:
    with make_demo_hub() as hub, tempfile.TemporaryDirectory(prefix="berth-bench-openai-") as scratch_dir:
        scratch = Path(scratch_dir)
        os.environ.update(hub.environment())
        with running_stack(scratch, environment={"BERTH_HF_ENDPOINT": hub.url}) as stack:
            api = httpx.Client(base_url=stack.api_url, timeout=60)
            account = new_account(api)
            key = api.post("/api/auth/keys/generate", headers=account.headers,
                           json={"name": "bench", "tier": "standard"}).json()["key"]
            worker_dir = scratch / "worker"
            with running_worker(stack, account, worker_dir, direct_control=True, stop_timeout=30,
                                environment={**hub.environment(), **fake_vllm_environment()}) as worker:
                runtime_id = json.loads((worker_dir / "runtime.json").read_text())["runtime_id"]
                profile = create_profile(account, DEMO_LLAMA)
                attached = attach(account, profile["id"], runtime_id)
                wait_for_installation(account, attached["installation_id"], "ready", timeout=120)
                events = stack.services.store.jobs.events_after(account.workspace_id, attached["job_id"], 0)
                endpoint = next(progress.endpoint for event in events
                                if (progress := ModelProgress.of_event(event.data)) is not None and progress.endpoint)
                legs = {"direct": (f"{endpoint}/chat/completions", {}),
                        "berth": (f"{stack.api_url}/openai/v1/chat/completions", {"Authorization": f"Bearer {key}"})}
                results = {}
                for stream in (False, True):
                    clients = {name: httpx.Client(timeout=60) for name in legs}
                    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in legs}
                    cpu = {name: [0.0, 0.0] for name in legs}  # this process, the worker
                    for index in range(warmup + requests):
                        order = list(legs) if index % 2 == 0 else list(reversed(legs))
                        for name in order:
                            url, headers = legs[name]
                            own, workers = time.process_time(), cpu_seconds(worker.pid)
                            times = timed(clients[name], url, body(stream), headers)
                            if index >= warmup:
                                samples[name].append(times)
                                cpu[name][0] += time.process_time() - own
                                cpu[name][1] += cpu_seconds(worker.pid) - workers
                    for client in clients.values():
                        client.close()
                    results["stream" if stream else "buffered"] = {"samples": samples, "cpu": cpu}
                account.delete(f"/v1/model-installations/{attached['installation_id']}")
    return results


def report(results: dict, requests: int) -> None:
    print(f"/openai/v1/chat/completions through berth beside the engine directly; {requests} requests per leg;"
          f" Python {platform.python_version()} on {os.cpu_count()} CPUs")
    for mode, measured in results.items():
        samples, cpu = measured["samples"], measured["cpu"]
        print(f"{mode} ({'stream: true' if mode == 'stream' else 'stream: false'}):")
        points = (("first byte", 0), ("last byte", 1)) if mode == "stream" else (("answer", 1),)
        for what, position in points:
            direct = [times[position] * 1000 for times in samples["direct"]]
            berth = [times[position] * 1000 for times in samples["berth"]]
            for name, ms in (("direct", direct), ("berth", berth)):
                print(f"  {what:10s} {name:6s} p50 {percentile(ms, 0.5):7.2f} ms  p95 {percentile(ms, 0.95):7.2f} ms")
            overhead_p50 = percentile(berth, 0.5) - percentile(direct, 0.5)
            overhead_p95 = percentile(berth, 0.95) - percentile(direct, 0.95)
            verdict = "met" if overhead_p50 <= GOAL_MS else "NOT met"
            print(f"  {what:10s} overhead p50 {overhead_p50:+.2f} ms (goal ≤ {GOAL_MS:g} ms: {verdict}),"
                  f" p95 {overhead_p95:+.2f} ms")
        for name, (own, worker) in cpu.items():
            print(f"  cpu per request {name:6s} this process {own / requests * 1000:5.2f} ms,"
                  f" the worker {worker / requests * 1000:5.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    arguments = parser.parse_args()
    report(measure(arguments.requests, arguments.warmup), arguments.requests)


if __name__ == "__main__":
    main()
