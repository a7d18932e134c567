"""`/mcp` `tools/call` of `service_status` through the Lambda handler, beside a minimal stateless
MCPServer doing the same (issue 14).

Two Lambda handlers answer the same `tools/call` of `service_status` (a typed result naming the
service and the caller), each through Mangum from an API Gateway HTTP API (v2) event:

  minimal  the SDK's own app: `MCPServer.streamable_http_app(stateless_http=True,
           json_response=True)` under `Mangum(lifespan="off")`, its session manager entered once
           for the process on the loop Mangum runs every invocation on, and a `service_status` tool
           answering the same fields without asking who calls. That is the cheapest arrangement the
           SDK allows; it holds only while the loop never changes.
  berth    `functions.api.handler`, the deployed entry point: berth's app with its request
           middleware and access log, the route group loaded on the first /mcp request, a session
           manager per request, the caller's API key checked against the table (moto in-process;
           cached for BERTH_READ_CACHE_SECONDS as in production), the tier gate, `service_status`.

The table for berth is seeded once (a signup and a read-tier key made through the handler) and
restored into moto in each child before any timer starts; so moto, and with it boto3, is imported
before the timer: a real Lambda's first /mcp request also pays boto3's import (about 0.1 s) and a
network round trip to DynamoDB.

Warm: a process per handler (the two must not share a process: the SDK installs a root log handler
when it finds none, berth adds its JSON one, and each would then format the other's records)
serves `--rounds` rounds of `--calls` invocations; the figure is the median over processes of each
one's median time per invocation, processes alternating (goal: berth ≤ 1.2× minimal).
Cold: each sample is a fresh process that builds a handler (its imports included) and serves its
first request, a `tools/call`; the order rotates every round and one warm-up run per variant fills
a scratch bytecode cache (goal: ≤ 1.3×). Children run without `rich`, as the Lambda package does
(the SDK imports it, if it can, for a log handler). Processes write their logs to /dev/null: berth's access
log line per request is part of what an invocation costs, a terminal is not.

Usage: python bench/mcp_endpoint.py [--runs 10] [--warm-runs 5] [--rounds 9] [--calls 200] [--json]
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "abc123.execute-api.us-east-1.amazonaws.com"
WARM_TARGET, COLD_TARGET = 1.2, 1.3
# name -> (label, builder of the Lambda handler)
VARIANTS = {"minimal": ("minimal stateless MCPServer", "_minimal_handler"),
            "berth": ("berth /mcp (functions.api)", "_berth_handler")}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "service_status", "arguments": {}}}
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1"}
SIGNUP = {"name": "Ada", "email": "ada@example.com", "password": "correct-horse"}


def mcp_event(method: str, path: str, body: dict, headers: dict) -> dict:
    """An API Gateway HTTP API (payload 2.0) event carrying a JSON body."""
    import json

    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"host": HOST, "content-type": "application/json",
                    "accept": "application/json, text/event-stream", **headers},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": HOST, "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1",
                     "userAgent": "bench"},
            "requestId": "bench-1", "routeKey": "$default", "stage": "$default",
            "time": "22/Nov/2026:07:00:00 +0000", "timeEpoch": 1795330000000,
        },
        "body": json.dumps(body), "isBase64Encoded": False,
    }


# --- the two handlers (everything imported inside, so a cold child pays for it) ---------------


def _minimal_handler():
    import asyncio

    from mangum import Mangum
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from pydantic import BaseModel

    class Service(BaseModel):
        name: str
        version: str
        mode: str
        status: str

    class Caller(BaseModel):
        workspace_id: str
        kind: str
        tier: str
        user_id: str

    class ServiceStatus(BaseModel):
        service: Service
        caller: Caller
        checks: dict | None

    server = MCPServer("minimal", log_level="WARNING")

    @server.tool()
    async def service_status(include_checks: bool = False) -> ServiceStatus:
        """The service and who is calling."""
        return ServiceStatus(service=Service(name="berth", version="bench", mode="local", status="ok"),
                             caller=Caller(workspace_id="ws_bench", kind="api_key", tier="read", user_id="usr_bench"),
                             checks=None)

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
    from functions.api import handler

    return handler


def _answered(response: dict) -> None:
    import json

    body = json.loads(response["body"]) if response["statusCode"] == 200 else {}
    content = body.get("result", {}).get("structuredContent") or {}
    if content.get("service", {}).get("status") != "ok" or content.get("caller", {}).get("tier") != "read":
        raise SystemExit(f"unexpected answer: {response}")


# --- the table berth's child needs ------------------------------------------------------------


def _seed(seed_file: str) -> None:
    """Sign up and mint a read-tier key once through berth's handler under moto; save the items."""
    import json

    from moto import mock_aws

    with mock_aws():
        from app.composition import services
        from app.store.schema import ensure_table, table_definition
        from functions.api import handler

        table = services().settings.table_name
        ensure_table(services().aws, table)
        signed_up = handler(mcp_event("POST", "/v1/auth/signup", SIGNUP, {}), None)
        token = json.loads(signed_up["body"])["token"]
        minted = handler(mcp_event("POST", "/api/auth/keys/generate", {"name": "bench", "tier": "read"},
                                   {"authorization": f"Bearer {token}"}), None)
        if minted["statusCode"] != 201:
            raise SystemExit(f"seeding failed: {minted}")
        items = services().aws.client("dynamodb").scan(TableName=table)["Items"]
    with open(seed_file, "w") as f:
        json.dump({"table": table_definition(table), "items": items, "key": json.loads(minted["body"])["key"]}, f)


def _restore(seed_file: str) -> dict:
    """moto in-process with the seeded table; the headers berth's requests carry."""
    import json

    import boto3
    from moto import mock_aws

    mock_aws().start()  # stays on until the process exits
    with open(seed_file) as f:
        seed = json.load(f)
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(**seed["table"])
    for item in seed["items"]:
        dynamodb.put_item(TableName=seed["table"]["TableName"], Item=item)
    return {"x-api-key": seed["key"]}


def _headers(variant: str, seed_file: str) -> dict:
    return _restore(seed_file) if variant == "berth" else {}


# --- children ----------------------------------------------------------------------------------


def _cold_child(variant: str, seed_file: str) -> None:
    import json

    _, builder = VARIANTS[variant]
    event = mcp_event("POST", "/mcp", CALL, _headers(variant, seed_file))
    cpu_started, started = time.process_time(), time.perf_counter()
    handler = globals()[builder]()
    built = time.perf_counter()
    response = handler(event, None)
    answered, cpu_answered = time.perf_counter(), time.process_time()
    _answered(response)
    print(json.dumps({"build_ms": (built - started) * 1000, "request_ms": (answered - built) * 1000,
                      "total_ms": (answered - started) * 1000, "cpu_ms": (cpu_answered - cpu_started) * 1000}))


def _warm_child(variant: str, seed_file: str, rounds: int, calls: int) -> None:
    import json
    from statistics import median

    _, builder = VARIANTS[variant]
    event = mcp_event("POST", "/mcp", CALL, _headers(variant, seed_file))
    handler = globals()[builder]()
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


def _run_child(args: list[str], env: dict, expect_json: bool = True) -> dict:
    import json
    import subprocess

    done = subprocess.run([sys.executable, os.path.abspath(__file__), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed (rerun it by hand to see why)")
    return json.loads(done.stdout.splitlines()[-1]) if expect_json else {}


def measure(kind: str, runs: int, args: list[str], env: dict) -> dict[str, list[dict]]:
    """`runs` child processes per variant, alternating which goes first; one discarded warm-up each.
    `args` start with the seed file."""
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
    return {"labels": {name: label for name, (label, _) in VARIANTS.items()},
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
        env = {**{k: v for k, v in os.environ.items()
                  if not k.startswith(("AWS_", "BERTH_")) and k != "PYTHONDONTWRITEBYTECODE"},
               **FAKE_AWS, "BERTH_DATA_DIR": os.path.join(scratch, "data"),
               "PYTHONPYCACHEPREFIX": os.path.join(scratch, "pyc")}
        seed_file = os.path.join(scratch, "seed.json")
        _run_child(["--seed", seed_file], env, expect_json=False)
        warm = measure("warm", options.warm_runs, [seed_file, str(options.rounds), str(options.calls)], env)
        summary = summarize(warm, measure("cold", options.runs, [seed_file], env))
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
    # The Lambda package has no `rich` (a CLI dependency); the SDK would import it to build a log
    # handler no one uses (about 0.1 s), so the children run without it too.
    sys.modules["rich"] = None  # type: ignore[assignment]
    if sys.argv[1:2] == ["--seed"]:
        _seed(sys.argv[2])
    elif sys.argv[1:2] == ["--cold-child"]:
        _cold_child(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--warm-child"]:
        _warm_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
