"""Cold start through the Lambda handler (issue 2).

Each sample is a fresh Python process that imports a Lambda handler and serves its first request,
as a new Lambda execution environment does. Three variants run in turn, the order rotating every
round, so drift on the machine falls on all of them alike:

  minimal /v1/health   bench/minimal_app.py, FastAPI + Mangum with one route: the baseline
  berth /v1/health     functions.api.handler
  berth /v1/auth/me    functions.api.handler with a session token, against moto in-process

Inside the child, `time.perf_counter()` is read just before the handler's module is imported and
again when the first response is back: "import + first request", the figure compared. The CPU
time the child spent on the same span (`time.process_time()`) is reported beside it, as other work
on a shared machine disturbs it less; the parent also times the whole subprocess, interpreter
start to exit. Children keep their bytecode in a scratch PYTHONPYCACHEPREFIX (whatever
PYTHONDONTWRITEBYTECODE says), and one discarded warm-up run per variant fills it and the page
cache: every variant imports from .pyc, none compiles source.

The authenticated variant needs an account in the table, yet berth must not be imported before
its timer starts, or the import it is meant to measure would already be paid. So:

  1. once per run, a seeding process signs up through berth's own handler under moto and dumps the
     table definition, the raw items the signup wrote and the session token;
  2. each /v1/auth/me child imports moto, starts `mock_aws()`, creates the table and puts those
     items with plain boto3 calls, all before the timer, then times the import of
     `functions.api` and the first authenticated `GET /v1/auth/me`.

Caveat: moto imports boto3 and botocore, so that variant does not pay boto3's import (berth defers
it to the first AWS call, see app/aws.py). It does pay creating berth's DynamoDB client, which
loads the service model in its own botocore session, and the calls themselves. A real Lambda's
first /v1/auth/me also pays the boto3 import and the network round trips.

Usage: python bench/cold_start.py [--runs 15] [--json] [--importtime]
"""

import os
import sys
import time

# A child imports nothing here beyond what the interpreter loaded at start-up, so it pre-pays none
# of the handler's imports; everything else is imported inside the function that needs it.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_RATIO = 1.2
# name -> (label, module whose `handler` serves the request, path requested)
VARIANTS = {
    "minimal": ("minimal /v1/health", "bench.minimal_app", "/v1/health"),
    "health": ("berth /v1/health", "functions.api", "/v1/health"),
    "me": ("berth /v1/auth/me", "functions.api", "/v1/auth/me"),
}
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
SIGNUP = '{"name": "Ada", "email": "ada@example.com", "password": "correct-horse"}'


def http_event(method: str, path: str, headers: dict | None = None, body: str = "") -> dict:
    """An API Gateway HTTP API (payload 2.0) event, as Lambda hands it to the handler."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", "content-type": "application/json",
                    **(headers or {})},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                               "sourceIp": "203.0.113.1", "userAgent": "bench"},
            "requestId": "bench-1", "routeKey": "$default", "stage": "$default", "time": "22/Nov/2026:07:00:00 +0000",
            "timeEpoch": 1795330000000,
        },
        "body": body or None,
        "isBase64Encoded": False,
    }


# --- child processes -------------------------------------------------------------------------


def _child(variant: str, seed_file: str = "") -> None:
    """One sample: import the handler's module and serve its first request; prints JSON."""
    _, module, path = VARIANTS[variant]
    headers = {"authorization": f"Bearer {_start_moto_with_seed(seed_file)}"} if seed_file else {}
    event = http_event("GET", path, headers)
    cpu_started, started = time.process_time(), time.perf_counter()
    handler = __import__(module, fromlist=["handler"]).handler
    imported = time.perf_counter()
    response = handler(event, None)
    answered, cpu_answered = time.perf_counter(), time.process_time()
    import json

    print(json.dumps({"status": response["statusCode"], "import_ms": (imported - started) * 1000,
                      "request_ms": (answered - imported) * 1000, "total_ms": (answered - started) * 1000,
                      "cpu_ms": (cpu_answered - cpu_started) * 1000}))


def _start_moto_with_seed(seed_file: str) -> str:
    """Start moto in-process and put the seeded account in its table; returns the session token."""
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
    return seed["token"]


def _seed(seed_file: str) -> None:
    """Sign up once through berth's handler under moto and save what /v1/auth/me needs."""
    import json

    from moto import mock_aws

    with mock_aws():
        from app.composition import services
        from app.store.schema import ensure_table, table_definition
        from functions.api import handler

        table = services().settings.table_name
        ensure_table(services().aws, table)
        response = handler(http_event("POST", "/v1/auth/signup", body=SIGNUP), None)
        if response["statusCode"] != 201:
            raise SystemExit(f"seeding signup failed: {response}")
        items = services().aws.client("dynamodb").scan(TableName=table)["Items"]
    with open(seed_file, "w") as f:
        json.dump({"table": table_definition(table), "items": items,
                   "token": json.loads(response["body"])["token"]}, f)


# --- the parent ------------------------------------------------------------------------------


def child_environment(scratch: str) -> dict:
    """The caller's environment without its AWS and berth settings, bytecode caching on (see above)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "BERTH_")) and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **FAKE_AWS, "BERTH_DATA_DIR": os.path.join(scratch, "data"),
            "PYTHONPYCACHEPREFIX": os.path.join(scratch, "pycache")}


def run_child(args: list[str], env: dict) -> str:
    import subprocess

    done = subprocess.run([sys.executable, os.path.abspath(__file__), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr}")
    return done.stdout


def sample(variant: str, seed_file: str, env: dict) -> dict:
    import json

    started = time.perf_counter()
    stdout = run_child(["--child", variant, *([seed_file] if variant == "me" else [])], env)
    wall_ms = (time.perf_counter() - started) * 1000
    result = json.loads(stdout.splitlines()[-1])
    if result["status"] != 200:
        raise SystemExit(f"{VARIANTS[variant][0]} answered {result['status']}")
    return {**result, "wall_ms": wall_ms}


def measure(runs: int, seed_file: str, env: dict) -> dict[str, list[dict]]:
    names = list(VARIANTS)
    for name in names:
        sample(name, seed_file, env)  # warm-up, discarded
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(sample(name, seed_file, env))
        print(f"\rround {round_ + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return samples


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    rank = (9 * len(ordered) + 9) // 10  # ceil(0.9 n), in integers
    return ordered[rank - 1]


def summarize(samples: dict[str, list[dict]]) -> dict:
    from statistics import median

    def ms(value: float) -> float:
        return round(value, 1)

    variants = {}
    for name, runs in samples.items():
        totals = [run["total_ms"] for run in runs]
        parts = {f"{part}_median_ms": ms(median(run[f"{part}_ms"] for run in runs))
                 for part in ("import", "request", "cpu", "wall")}
        variants[name] = {"label": VARIANTS[name][0], "runs": len(runs), "median_ms": ms(median(totals)),
                          "p90_ms": ms(p90(totals)), **parts}
    ratio = round(variants["health"]["median_ms"] / variants["minimal"]["median_ms"], 2)
    cpu_ratio = round(variants["health"]["cpu_median_ms"] / variants["minimal"]["cpu_median_ms"], 2)
    return {"variants": variants, "health_ratio": ratio, "health_cpu_ratio": cpu_ratio,
            "target_ratio": TARGET_RATIO, "target_met": ratio <= TARGET_RATIO}


def print_table(summary: dict) -> None:
    baseline = summary["variants"]["minimal"]["median_ms"]
    print("| variant | median ms | p90 ms | import ms | first request ms | CPU ms | process wall ms | × minimal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for v in summary["variants"].values():
        print(f"| {v['label']} | {v['median_ms']:.0f} | {v['p90_ms']:.0f} | {v['import_median_ms']:.0f} | "
              f"{v['request_median_ms']:.1f} | {v['cpu_median_ms']:.0f} | {v['wall_median_ms']:.0f} | "
              f"{v['median_ms'] / baseline:.2f} |")
    verdict = "met" if summary["target_met"] else "NOT met"
    print(f"\nberth /v1/health ÷ minimal (medians of import + first request): {summary['health_ratio']:.2f}× "
          f"— target ≤ {TARGET_RATIO}×: {verdict} (CPU time: {summary['health_cpu_ratio']:.2f}×)")


def import_self_times(module: str, env: dict) -> dict[str, float]:
    """Self time in ms of each module loaded by importing `module`, from one `python -X importtime`."""
    import re
    import subprocess

    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    line = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")
    return {m[2]: int(m[1]) / 1000 for m in map(line.match, done.stderr.splitlines()) if m}


def import_profile(env: dict) -> dict:
    """berth's heaviest imports by self time, and how much of its import the baseline never loads."""
    berth = import_self_times("functions.api", env)
    minimal = import_self_times("bench.minimal_app", env)
    top = sorted(berth.items(), key=lambda kv: kv[1], reverse=True)[:10]
    return {
        "top_self_ms": [{"module": m, "self_ms": round(ms, 1), "in_minimal": m in minimal} for m, ms in top],
        "berth_total_self_ms": round(sum(berth.values())),
        "berth_only_self_ms": round(sum(ms for m, ms in berth.items() if m not in minimal)),
        "minimal_total_self_ms": round(sum(minimal.values())),
    }


def print_import_profile(profile: dict) -> None:
    print("\nimporttime, `import functions.api`, top 10 by self time:\n")
    print("| module | self ms | minimal app imports it too |")
    print("| --- | ---: | --- |")
    for row in profile["top_self_ms"]:
        print(f"| {row['module']} | {row['self_ms']:.1f} | {'yes' if row['in_minimal'] else 'no'} |")
    print(f"\nself time summed: berth {profile['berth_total_self_ms']} ms, of which modules the minimal app "
          f"never loads {profile['berth_only_self_ms']} ms; minimal app {profile['minimal_total_self_ms']} ms")


def main() -> None:
    import argparse
    import json
    import platform
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per variant (default 15)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--importtime", action="store_true", help="also profile `import functions.api`")
    options = parser.parse_args()

    load_before = os.getloadavg()[0]  # other work on the machine skews every figure: report it
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        env = child_environment(scratch)
        seed_file = os.path.join(scratch, "seed.json")
        run_child(["--seed", seed_file], env)
        summary = summarize(measure(options.runs, seed_file, env))
        profile = import_profile(env) if options.importtime else None

    if options.json:
        machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
                   "load_average": [load_before, os.getloadavg()[0]]}
        print(json.dumps({**summary, "machine": machine, **({"importtime": profile} if profile else {})}, indent=2))
        return
    print(f"cold start, {options.runs} fresh processes per variant, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after\n")
    print_table(summary)
    if profile:
        print_import_profile(profile)


if __name__ == "__main__":
    # Children see the project root first on sys.path, as Lambda puts the function's code root.
    sys.path[0] = ROOT
    if sys.argv[1:2] == ["--child"]:
        _child(*sys.argv[2:])
    elif sys.argv[1:2] == ["--seed"]:
        _seed(sys.argv[2])
    else:
        main()
