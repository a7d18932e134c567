"""`/mcp` `tools/call` through the Lambda handler, beside a minimal stateless MCPServer (issue 14).

Two Lambda handlers answer the same `tools/call` of a trivial tool (`ping`, a typed result), each
through Mangum from an API Gateway HTTP API (v2) event:

  minimal  the SDK's own app: `MCPServer.streamable_http_app(stateless_http=True,
           json_response=True)` under `Mangum(lifespan="off")`, its session manager entered once
           for the process on the loop Mangum runs every invocation on. That is the cheapest
           arrangement the SDK allows; it holds only while the loop never changes.
  berth    berth's app with the `/mcp` foundation: `create_app()` plus `StatelessMCPEndpoint`
           over `build_server(...)`, a session manager per request, an API key checked per
           request. Once `/mcp` is wired, `BERTH` below names `functions.api.handler` and berth's
           `service_status` tool instead, and `_berth_handler` goes.

Warm: a process per handler (the two must not share a process: the SDK installs a root log handler
when it finds none, berth adds its JSON one, and each would then format the other's records)
serves `--rounds` rounds of `--calls` invocations; the figure is the median over processes of each
one's median time per invocation, processes alternating (goal: berth ≤ 1.2× minimal).
Cold: each sample is a fresh process that builds a handler (its imports included) and serves its
first request, a `tools/call`; the order rotates every round and one warm-up run per variant fills
a scratch bytecode cache (goal: ≤ 1.3×). Processes write their logs to /dev/null: berth's access
log line per request is part of what an invocation costs, a terminal is not.

Usage: python bench/mcp_endpoint.py [--runs 10] [--warm-runs 5] [--rounds 9] [--calls 200] [--json]
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "abc123.execute-api.us-east-1.amazonaws.com"
WARM_TARGET, COLD_TARGET = 1.2, 1.3
# name -> (label, builder of the Lambda handler, headers the request carries)
MINIMAL = ("minimal stateless MCPServer", "_minimal_handler", {})
BERTH = ("berth /mcp (foundation)", "_berth_handler", {"x-api-key": "bench-key"})
VARIANTS = {"minimal": MINIMAL, "berth": BERTH}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ping", "arguments": {"echo": "hi"}}}


def mcp_event(message: dict, headers: dict) -> dict:
    """An API Gateway HTTP API (payload 2.0) event carrying one JSON-RPC message to /mcp."""
    import json

    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/mcp", "rawQueryString": "",
        "headers": {"host": HOST, "content-type": "application/json",
                    "accept": "application/json, text/event-stream", **headers},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": HOST, "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/mcp", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1",
                     "userAgent": "bench"},
            "requestId": "bench-1", "routeKey": "$default", "stage": "$default",
            "time": "22/Nov/2026:07:00:00 +0000", "timeEpoch": 1795330000000,
        },
        "body": json.dumps(message), "isBase64Encoded": False,
    }


# --- the two handlers (everything imported inside, so a cold child pays for it) ---------------


def _minimal_handler():
    import asyncio

    from mangum import Mangum
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from pydantic import BaseModel

    class Pong(BaseModel):
        echo: str

    server = MCPServer("minimal", log_level="WARNING")

    @server.tool()
    def ping(echo: str) -> Pong:
        """Answer at once."""
        return Pong(echo=echo)

    app = server.streamable_http_app(stateless_http=True, json_response=True,
                                     transport_security=TransportSecuritySettings(allowed_hosts=[HOST]))
    handler = Mangum(app, lifespan="off")
    loop = asyncio.get_event_loop()  # the loop Mangum set up and runs every invocation on
    started = asyncio.Event()

    async def hold_session_manager() -> None:
        async with server.session_manager.run():
            started.set()
            await asyncio.Event().wait()

    handler.session_manager_task = loop.create_task(hold_session_manager())  # type: ignore[attr-defined]
    loop.run_until_complete(started.wait())
    return handler


def _berth_handler():
    from mangum import Mangum
    from pydantic import BaseModel

    from app.auth.principal import Principal, Tier
    from app.errors import Unauthorized
    from app.main import create_app
    from app.mcp.endpoint import StatelessMCPEndpoint, mcp_router
    from app.mcp.tools import build_server, reads, tool

    class Pong(BaseModel):
        echo: str

    def ping(echo: str) -> Pong:
        """Answer at once."""
        return Pong(echo=echo)

    caller = Principal(kind="api_key", workspace_id="ws_bench", subject_id="key_bench", tier=Tier.read,
                       credential_digest="")

    async def authenticate(request):
        if request.headers.get("x-api-key") != "bench-key":
            raise Unauthorized("unknown API key")
        return caller

    app = create_app()
    server = build_server("berth", "bench", [tool(ping, tier=Tier.read, annotations=reads("Ping"))])
    app.include_router(mcp_router(StatelessMCPEndpoint(server, authenticate=authenticate, allowed_hosts=[HOST])))
    return Mangum(app, lifespan="off")


def _answered(response: dict) -> None:
    import json

    body = json.loads(response["body"]) if response["statusCode"] == 200 else {}
    if body.get("result", {}).get("structuredContent") != {"echo": "hi"}:
        raise SystemExit(f"unexpected answer: {response}")


# --- children ----------------------------------------------------------------------------------


def _cold_child(variant: str) -> None:
    import json

    _, builder, headers = VARIANTS[variant]
    event = mcp_event(CALL, headers)
    cpu_started, started = time.process_time(), time.perf_counter()
    handler = globals()[builder]()
    built = time.perf_counter()
    response = handler(event, None)
    answered, cpu_answered = time.perf_counter(), time.process_time()
    _answered(response)
    print(json.dumps({"build_ms": (built - started) * 1000, "request_ms": (answered - built) * 1000,
                      "total_ms": (answered - started) * 1000, "cpu_ms": (cpu_answered - cpu_started) * 1000}))


def _warm_child(variant: str, rounds: int, calls: int) -> None:
    import json
    from statistics import median

    _, builder, headers = VARIANTS[variant]
    handler, event = globals()[builder](), mcp_event(CALL, headers)
    for _ in range(50):  # warm-up: first-use imports and caches
        _answered(handler(event, None))
    wall, cpu = [], []
    for _ in range(rounds):
        cpu_started, started = time.process_time(), time.perf_counter()
        for _ in range(calls):
            handler(event, None)
        wall.append((time.perf_counter() - started) / calls * 1000)
        cpu.append((time.process_time() - cpu_started) / calls * 1000)
    print(json.dumps({"wall_ms": median(wall), "cpu_ms": median(cpu)}))


# --- the parent --------------------------------------------------------------------------------


def _run_child(args: list[str], env: dict) -> dict:
    import json
    import subprocess

    done = subprocess.run([sys.executable, os.path.abspath(__file__), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed (rerun it by hand to see why)")
    return json.loads(done.stdout.splitlines()[-1])


def measure(kind: str, runs: int, args: list[str], env: dict) -> dict[str, list[dict]]:
    """`runs` child processes per variant, alternating which goes first; one discarded warm-up each."""
    names = list(VARIANTS)
    for name in names:
        _run_child([f"--{kind}-child", name, *args], env)  # fills the bytecode cache (and the page cache)
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(runs):
        for name in names[round_ % 2:] + names[:round_ % 2]:
            samples[name].append(_run_child([f"--{kind}-child", name, *args], env))
        print(f"\r{kind} round {round_ + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return samples


def summarize(warm: dict[str, list[dict]], cold: dict[str, list[dict]]) -> dict:
    from statistics import median

    def r(value: float, digits: int = 2) -> float:
        return round(value, digits)

    warm_ms = {name: r(median(sample["wall_ms"] for sample in samples), 3) for name, samples in warm.items()}
    warm_cpu_ms = {name: r(median(sample["cpu_ms"] for sample in samples), 3) for name, samples in warm.items()}
    cold_ms = {name: {part: r(median(sample[f"{part}_ms"] for sample in samples), 1)
                      for part in ("total", "build", "request", "cpu")} for name, samples in cold.items()}
    warm_ratio = r(warm_ms["berth"] / warm_ms["minimal"])
    cold_ratio = r(cold_ms["berth"]["total"] / cold_ms["minimal"]["total"])
    return {"labels": {name: label for name, (label, _, _) in VARIANTS.items()},
            "warm_ms_per_call": warm_ms, "warm_cpu_ms_per_call": warm_cpu_ms, "warm_ratio": warm_ratio,
            "warm_cpu_ratio": r(warm_cpu_ms["berth"] / warm_cpu_ms["minimal"]), "warm_target": WARM_TARGET,
            "cold_ms": cold_ms, "cold_ratio": cold_ratio, "cold_target": COLD_TARGET,
            "cold_cpu_ratio": r(cold_ms["berth"]["cpu"] / cold_ms["minimal"]["cpu"])}


def print_summary(summary: dict, options) -> None:
    labels, warm, cold = summary["labels"], summary["warm_ms_per_call"], summary["cold_ms"]
    warm_cpu = summary["warm_cpu_ms_per_call"]
    print(f"warm: {options.warm_runs} processes per handler, each the median of {options.rounds} rounds of "
          f"{options.calls} tools/call invocations; medians over processes\n")
    print("| variant | ms per tools/call | × minimal | CPU ms per tools/call | × minimal |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in VARIANTS:
        print(f"| {labels[name]} | {warm[name]:.3f} | {warm[name] / warm['minimal']:.2f} | {warm_cpu[name]:.3f} | "
              f"{warm_cpu[name] / warm_cpu['minimal']:.2f} |")
    print(f"\ncold: {options.runs} fresh processes per handler, medians\n")
    print("| variant | build + first tools/call ms | build ms | first request ms | CPU ms | × minimal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in VARIANTS:
        figures = cold[name]
        print(f"| {labels[name]} | {figures['total']:.0f} | {figures['build']:.0f} | {figures['request']:.1f} | "
              f"{figures['cpu']:.0f} | {figures['total'] / cold['minimal']['total']:.2f} |")

    def verdict(ratio: float, target: float) -> str:
        return f"{ratio:.2f}× — target ≤ {target}×: {'met' if ratio <= target else 'NOT met'}"

    print(f"\nwarm berth ÷ minimal: {verdict(summary['warm_ratio'], summary['warm_target'])} "
          f"(CPU time: {summary['warm_cpu_ratio']:.2f}×)")
    print(f"cold berth ÷ minimal: {verdict(summary['cold_ratio'], summary['cold_target'])} "
          f"(CPU time: {summary['cold_cpu_ratio']:.2f}×)")


def main() -> None:
    import argparse
    import json
    import platform
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per handler, cold (default 10)")
    parser.add_argument("--warm-runs", type=int, default=5, help="processes per handler, warm (default 5)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per warm process (default 9)")
    parser.add_argument("--calls", type=int, default=200, help="invocations per round, warm (default 200)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    options = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="berth-bench-mcp-") as scratch:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("BERTH_") and k != "PYTHONDONTWRITEBYTECODE"},
               "BERTH_DATA_DIR": os.path.join(scratch, "data"), "PYTHONPYCACHEPREFIX": os.path.join(scratch, "pyc")}
        warm = measure("warm", options.warm_runs, [str(options.rounds), str(options.calls)], env)
        summary = summarize(warm, measure("cold", options.runs, [], env))
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if options.json:
        print(json.dumps({**summary, "machine": machine}, indent=2))
        return
    print(f"Python {machine['python']}, {machine['cpus']} CPUs, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after\n")
    print_summary(summary, options)


if __name__ == "__main__":
    sys.path[0] = ROOT  # children see the project root first, as Lambda puts the function's code root
    if sys.argv[1:2] == ["--cold-child"]:
        _cold_child(sys.argv[2])
    elif sys.argv[1:2] == ["--warm-child"]:
        _warm_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
