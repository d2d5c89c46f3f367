"""Lambda cold start to first result: cloudq's handler beside a hand-written Powertools one.

Each sample is a fresh Python process, as a new function instance is: it imports the handler
module, creates its boto3 clients, handles one SQS event of ``--records`` records (fresh task ids,
Lambda's record shape) whose results go to DynamoDB, then reads one result back. It is timed from
just before the process is spawned to the handler's return and to the first result read, so
interpreter start, every import and client creation, and the first call's own work are in it.

Both run against one moto server this script starts (DynamoDB table and SQS queue made
beforehand, so neither pays for creating them):

* cloudq: ``App(broker="sqs://", results="dynamodb://TABLE")``, a no-op task, ``make_handler(app)``;
  clients are built by the first event (GetQueueUrl once; the revoke check's BatchGetItem; one
  conditional PutItem per record).
* Powertools: ``BatchProcessor(EventType.SQS)`` + ``process_partial_response``, a boto3 DynamoDB
  client made at module level (the documented idiom), one PutItem per record into the same table.

Cases are interleaved round by round; medians of ``--runs`` processes each, after one unmeasured
warm-up process per case (bytecode caches written). Requests are counted at the server per cold
start. The target (benchmarks/README.md): cloudq at most 1.1x Powertools, to first result.
``--detail`` adds where cloudq's time goes: ``-X importtime`` of its handler module and a cProfile
of its first event.

    python benchmarks/lambda_cold_start.py [--runs 11] [--records 10] [--detail] [--quick] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGET_RATIO = 1.1
TABLE = "bench-cold-results"
PREFIX = "bench-cold-"
TASK = "bench.noop"

CLOUDQ_MODULE = f"""\
from cloudq import App
from cloudq_aws.lambda_.handler import make_handler

app = App("bench", broker="sqs://?prefix={PREFIX}", results="dynamodb://{TABLE}")


@app.task(name="{TASK}")
def noop(n: int) -> int:
    return n


handler = make_handler(app)


def first_result(task_id):
    return app.AsyncResult(task_id).get(timeout=10)
"""

POWERTOOLS_MODULE = f"""\
import json
import time

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

db = boto3.client("dynamodb")
processor = BatchProcessor(event_type=EventType.SQS)


def noop(n):
    return n


def record_handler(record):
    body = json.loads(record.body)
    result = noop(*body["args"])
    db.put_item(
        TableName="{TABLE}",
        Item={{
            "task_id": {{"S": body["id"]}},
            "state": {{"S": "SUCCESS"}},
            "task_name": {{"S": body["task"]}},
            "result": {{"S": json.dumps(result)}},
            "finished_at": {{"N": repr(time.time())}},
        }},
    )


def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def first_result(task_id):
    item = db.get_item(TableName="{TABLE}", Key={{"task_id": {{"S": task_id}}}}, ConsistentRead=True)["Item"]
    return json.loads(item["result"]["S"])
"""

# the process Lambda starts: its runtime has json and time loaded before the handler module
RUNNER = """\
import time
started = time.time()
import json, sys
module_name, event_path, task_id = sys.argv[1:4]
event = json.loads(open(event_path).read())


class Context:
    def get_remaining_time_in_millis(self):
        return 60_000


marks = {"interpreter": started}
import importlib
module = importlib.import_module(module_name)
marks["imported"] = time.time()
response = module.handler(event, Context())
marks["handled"] = time.time()
assert response["batchItemFailures"] == [], response
marks["value"] = module.first_result(task_id)
marks["result"] = time.time()
print(json.dumps(marks))
"""

CASES = {"cloudq": "cq_cold_handler", "powertools": "pt_cold_handler"}


def child_env(workdir: Path, server_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("CLOUDQ_")}
    env.update(server_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir), env.get("PYTHONPATH", "")]))
    return env


def write_event(workdir: Path, records: int, arn: str) -> tuple[Path, str, int]:
    """A fresh event (new task ids): its path, the id of a record to read back and that record's arg."""
    from lambda_overhead import sqs_event

    event = sqs_event(records, TASK, arn)
    path = workdir / "event.json"
    path.write_text(json.dumps(event))
    last = json.loads(event["Records"][-1]["body"])
    return path, last["id"], last["args"][0]


def cold_start(module: str, workdir: Path, env: dict[str, str], records: int, arn: str) -> dict[str, float]:
    """One fresh process: seconds from spawn to each mark."""
    path, task_id, expected = write_event(workdir, records, arn)
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, module, str(path), task_id],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    if marks.pop("value") != expected:
        raise RuntimeError(f"{module}: the result read back is not the task's")
    return {name: stamp - spawned for name, stamp in marks.items()}


def setup(server: Any) -> str:
    """The queue cloudq's handler reads and the results table both write; the queue's ARN."""
    import boto3
    from cloudq_aws.resources import results_table_definition

    os.environ.update(server.environment())
    db = boto3.client("dynamodb")
    db.create_table(**results_table_definition(TABLE))
    db.get_waiter("table_exists").wait(TableName=TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"{PREFIX}default")["QueueUrl"]
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def detail(workdir: Path, env: dict[str, str], records: int, arn: str) -> None:
    """Where cloudq's cold start goes: imports (self ms, cumulative) and its first event's profile."""
    path = write_event(workdir, records, arn)[0]
    code = "import cq_cold_handler"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=workdir, env=env, capture_output=True, text=True
    )
    rows = []
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append((int(parts[1]) / 1000, int(parts[0]) / 1000, parts[2].rstrip()))
    print("\ncloudq handler module, -X importtime: the top-level imports by cumulative ms")
    for cumulative, own, name in sorted((r for r in rows if not r[2].startswith("   ")), reverse=True)[:12]:
        print(f"  {cumulative:8.1f} {own:8.1f}  {name.strip()}")
    profile = (
        "import cProfile, pstats, json, sys\n"
        "import cq_cold_handler as m\n"
        "class C:\n    def get_remaining_time_in_millis(self): return 60000\n"
        f"event = json.loads(open({str(path)!r}).read())\n"
        "p = cProfile.Profile(); p.enable(); m.handler(event, C()); p.disable()\n"
        "pstats.Stats(p).sort_stats('cumulative').print_stats(25)\n"
    )
    out = subprocess.run([sys.executable, "-c", profile], cwd=workdir, env=env, capture_output=True, text=True)
    print("cloudq's first event (clients included), cProfile by cumulative time:")
    print("\n".join(out.stdout.splitlines()[:45]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="fresh processes per case (default 11)")
    parser.add_argument("--records", type=int, default=10, help="records in the event (default 10)")
    parser.add_argument("--detail", action="store_true", help="where cloudq's cold start time goes")
    parser.add_argument("--quick", action="store_true", help="3 processes per case: a CI smoke run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    opts = parser.parse_args(argv)
    runs = 3 if opts.quick else opts.runs
    try:
        import aws_lambda_powertools  # noqa: F401

        cases = dict(CASES)
    except ImportError:
        print("powertools: skipped: not installed (pip install aws-lambda-powertools)")
        cases = {"cloudq": CASES["cloudq"]}
    from cloudq_aws.testing import MotoServer

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cloudq-cold-") as tmp, MotoServer(workdir=Path(tmp)) as server:
        workdir = Path(tmp)
        (workdir / "cq_cold_handler.py").write_text(CLOUDQ_MODULE)
        (workdir / "pt_cold_handler.py").write_text(POWERTOOLS_MODULE)
        arn = setup(server)
        env = child_env(workdir, server.environment())
        for module in cases.values():  # warm-up: bytecode caches, the server's first requests
            cold_start(module, workdir, env, opts.records, arn)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        requests: dict[str, dict[str, int]] = {}
        for _ in range(runs):
            for name, module in cases.items():
                with server.count_requests() as counts:
                    samples[name].append(cold_start(module, workdir, env, opts.records, arn))
                requests[name] = dict(counts)
        bare = statistics.median(_bare(workdir, env) for _ in range(runs))
        if opts.detail:
            detail(workdir, env, opts.records, arn)
    load_after = os.getloadavg()[0]

    marks = ("interpreter", "imported", "handled", "result")
    print(
        f"\ncold start, {opts.records}-record SQS event, DynamoDB results on moto; median of {runs} fresh processes"
        f" (python {sys.version.split()[0]}); load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"bare interpreter (python -c pass, spawn to exit): {bare * 1000:.1f} ms")
    print(f"{'case':12} " + " ".join(f"{m + ' ms':>14}" for m in marks) + "   requests per cold start")
    medians: dict[str, dict[str, float]] = {}
    for name, rows in samples.items():
        medians[name] = {m: statistics.median(r[m] for r in rows) * 1000 for m in marks}
        counts = ", ".join(f"{k} {v}" for k, v in sorted(requests[name].items()))
        print(f"{name:12} " + " ".join(f"{medians[name][m]:14.1f}" for m in marks) + f"   {counts}")
    cq = medians["cloudq"]
    print("\ncloudq phases (ms between marks): " + _phases(cq))
    if "powertools" not in medians:
        return 0
    pt = medians["powertools"]
    print("powertools phases (ms between marks): " + _phases(pt))
    ratio = cq["result"] / pt["result"]
    handled = cq["handled"] / pt["handled"]
    verdict = "ok" if ratio <= TARGET_RATIO else "MISS"
    print(f"ratio cloudq / powertools to first result: {ratio:.2f} (target <= {TARGET_RATIO}) {verdict}")
    print(f"ratio cloudq / powertools to the handler's return: {handled:.2f}")
    if verdict == "MISS" and opts.strict:
        return 1
    return 0


def _phases(m: dict[str, float]) -> str:
    return (
        f"start {m['interpreter']:.1f}, import {m['imported'] - m['interpreter']:.1f}, "
        f"first event {m['handled'] - m['imported']:.1f}, read {m['result'] - m['handled']:.1f}"
    )


def _bare(workdir: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=workdir, env=env, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
