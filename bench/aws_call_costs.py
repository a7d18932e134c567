"""The floor under dispatch latency on the local stack (issue 3): what each AWS call costs on
the stack's moto server alone, and what the calls a job's `start` cannot do without add up to,
beside the raw SQS baseline measured in the same run.

A job's `start` event exists only after, one after the other:
- the POST's way through the API (an HTTP hop, measured as `GET /v1/health` on a keep-alive
  connection);
- the create transaction: the job, its `queued` event, the workspace's open-job counter (a
  conditional ADD), the audit record, the usage count (an ADD) and the runtime's slot (a
  conditional ADD): three puts and three updates;
- SendMessage and the return of the worker's waiting long poll: the baseline itself;
- the claim's way through the API (another hop);
- the claim transaction: the job's conditional update and the `start` event's put.

Each call runs `--samples` times on items of its own, one at a time, with nothing else running
on the stack: the floor is what the pipeline would cost if nothing ever waited for anything
else. `bench/dispatch_latency.py` measures the pipeline itself.

Usage: python bench/aws_call_costs.py [--samples 80] [--json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402

from bench._stack import raw_sqs_round_trips, running_stack  # noqa: E402
from bench.dispatch_latency import job_message_body  # noqa: E402

TARGET_RATIO = 3.0


def _median_ms(call, samples: int) -> float:
    times = []
    for n in range(samples):
        started = time.perf_counter()
        call(n)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def _key(partition: str, sort: str) -> dict:
    return {"pk": {"S": partition}, "sk": {"S": sort}}


def measure(samples: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch, running_stack(Path(scratch)) as stack:
        table = stack.services.settings.table_name
        dynamodb, sqs = stack.services.aws.client("dynamodb"), stack.services.aws.client("sqs")
        queue = sqs.create_queue(QueueName=f"bench-costs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        body = job_message_body()
        run = uuid.uuid4().hex[:8]

        def put(n):
            dynamodb.put_item(TableName=table, Item={**_key(f"BENCH#{run}", f"P#{n:05d}"), "body": {"S": body}})

        def get(n):
            dynamodb.get_item(TableName=table, Key=_key(f"BENCH#{run}", f"P#{n:05d}"))

        def counter(sort: str, attribute: str, limit: int | None) -> dict:
            update = {"TableName": table, "Key": _key(f"BENCH#{run}", sort), "UpdateExpression": f"ADD {attribute} :one",
                      "ExpressionAttributeValues": {":one": {"N": "1"}}}
            if limit is not None:
                update["ConditionExpression"] = f"attribute_not_exists({attribute}) OR {attribute} < :limit"
                update["ExpressionAttributeValues"][":limit"] = {"N": str(limit)}
            return {"Update": update}

        def create_transaction(n):
            fresh = {"ConditionExpression": "attribute_not_exists(pk)"}
            dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {**_key(f"JOB#{run}-{n}", "JOB"), "body": {"S": body}}, **fresh}},
                {"Put": {"TableName": table, "Item": {**_key(f"JOB#{run}-{n}", "EV#000001"), "step": {"S": "job"}},
                         **fresh}},
                counter("WORKSPACE", "open_jobs", 1_000_000),
                {"Put": {"TableName": table, "Item": _key(f"AUDIT#{run}", f"A#{n:05d}")}},
                counter(f"USAGE#{n // 100}", "jobs", None),
                counter("RUNTIME", "running", 1_000_000),
            ])

        def claim_transaction(n):
            dynamodb.transact_write_items(TransactItems=[
                {"Update": {"TableName": table, "Key": _key(f"JOB#{run}-{n}", "JOB"),
                            "UpdateExpression": "SET #s = :running, claim_id = :claim",
                            "ConditionExpression": "attribute_not_exists(claim_id)",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {":running": {"S": "running"}, ":claim": {"S": f"clm_{n}"}}}},
                {"Put": {"TableName": table, "Item": {**_key(f"JOB#{run}-{n}", "EV#000002"), "step": {"S": "job"}},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])

        with httpx.Client(base_url=stack.api_url) as api:
            figures = {
                "baseline_ms": raw_sqs_round_trips(samples, body)["p50_ms"],
                "put_item_ms": _median_ms(put, samples),
                "get_item_ms": _median_ms(get, samples),
                "send_message_ms": _median_ms(lambda n: sqs.send_message(QueueUrl=queue, MessageBody=body), samples),
                "create_transaction_ms": _median_ms(create_transaction, samples),
                "claim_transaction_ms": _median_ms(claim_transaction, samples),
                "api_hop_ms": _median_ms(lambda n: api.get("/v1/health").raise_for_status(), samples),
            }
        sqs.delete_queue(QueueUrl=queue)
    floor = (2 * figures["api_hop_ms"] + figures["create_transaction_ms"] + figures["baseline_ms"]
             + figures["claim_transaction_ms"])
    return {**figures, "floor_ms": round(floor, 1), "floor_ratio": round(floor / figures["baseline_ms"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=80, help="calls of each kind (default 80)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    figures = measure(options.samples)
    if options.json:
        print(json.dumps({**figures, "target_ratio": TARGET_RATIO}, indent=2))
        return
    print(f"AWS call costs on the local stack's moto, {options.samples} samples each (medians), "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| call | p50 ms |\n| --- | ---: |")
    for label, name in (("SendMessage → a waiting long poll returns (the baseline)", "baseline_ms"),
                        ("PutItem", "put_item_ms"), ("GetItem", "get_item_ms"), ("SendMessage", "send_message_ms"),
                        ("create transaction (3 puts, 3 updates)", "create_transaction_ms"),
                        ("claim transaction (1 conditional update, 1 put)", "claim_transaction_ms"),
                        ("one HTTP hop through the API (GET /v1/health)", "api_hop_ms")):
        print(f"| {label} | {figures[name]} |")
    print(f"\nfloor of POST → `start`: 2 hops + create + baseline + claim = {figures['floor_ms']} ms = "
          f"{figures['floor_ratio']}× the baseline (target ≤ {TARGET_RATIO:g}×: "
          f"{'reachable' if figures['floor_ratio'] <= TARGET_RATIO else 'below the floor'})")


if __name__ == "__main__":
    main()
