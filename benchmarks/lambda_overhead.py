"""The Lambda handler's cold import and per-record framework overhead, beside Powertools'
BatchProcessor doing the same no-op work in the same run.

Import: each case is a fresh ``python -c`` process, cases interleaved round by round, median
reported (bare interpreter subtracted). Target (benchmarks/README.md, Targets): the handler module imports in
at most ``import boto3`` + 40 ms, and builds no client.

Per record: one synthetic SQS event of ``--records`` records (Lambda's exact record shape, cloudq
envelopes for a no-op task), handled by ``make_handler(app)`` with an in-memory result store,
minus calling the function directly on the same arguments, divided by the records. The SQS broker
needs its queue once (GetQueueUrl on a moto server this script starts and stops); all-success
batches make no SQS call. Powertools' ``BatchProcessor`` runs the same function on the same event,
once on plain dict records and once parsing each record with its pydantic ``SqsRecordModel``.
Target: at most 8 µs per record, envelope decoding and argument validation included.

    python benchmarks/lambda_overhead.py [--runs 15] [--records 1000] [--rounds 9] [--quick] [--strict]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_time import loaded_modules, measure

IMPORT_TARGET_OVER_BOTO3_MS = 40.0
RECORD_TARGET_US = 8.0  # issue 15: envelope decoding and argument validation included
BASELINE = "python -c pass"
BOTO3 = "import boto3"
HANDLER_MODULE = "handler module: App + task + make_handler"
APP_MODULE = (
    "from cloudq import App\n"
    "from cloudq_aws.lambda_.handler import make_handler\n"
    "app = App('bench', broker='sqs://', results='dynamodb://bench-results')\n"
    "@app.task()\n"
    "def noop(n: int) -> None:\n"
    "    return None\n"
    "handler = make_handler(app)\n"
)
IMPORT_CASES = {
    BASELINE: "pass",
    BOTO3: "import boto3",
    "import cloudq, cloudq_aws.lambda_.handler": "import cloudq, cloudq_aws.lambda_.handler",
    HANDLER_MODULE: APP_MODULE,
    "powertools batch (BatchProcessor)": (
        "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response"
    ),
}


# -- per record ------------------------------------------------------------------------------------


def noop(n: int) -> None:
    return None


def sqs_event(n: int, task: str, arn: str) -> dict[str, Any]:
    """An SQS event as Lambda sends it: ``n`` cloudq envelopes for ``task``, fresh task ids."""
    from cloudq_aws.testing import lambda_record

    from cloudq.envelope import build

    now = time.time()
    stamp = str(int(now * 1000))
    records = []
    for i in range(n):
        body = build(uuid.uuid4().hex, task, [i], {}, sent_at=now).decode()
        received = {  # one ReceiveMessage message, all attributes asked
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": f"AQEB{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "Body": body,
            "Attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": stamp,
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": stamp,
            },
            "MessageAttributes": {"task": {"DataType": "String", "StringValue": task}},
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "MD5OfMessageAttributes": "00000000000000000000000000000000",
        }
        records.append(lambda_record(received, arn, "us-east-1"))
    return {"Records": records}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of one call, after a garbage collection so earlier rounds' garbage is not billed here."""
    gc.collect()
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def call_each(fn: Callable[..., Any], calls: list[Any]) -> None:
    for args in calls:
        fn(*args)


PEERS = ("powertools BatchProcessor", "powertools BatchProcessor + SqsRecordModel")


def powertools_installed() -> bool:
    try:
        import aws_lambda_powertools  # noqa: F401
    except ImportError:
        return False
    return True


def per_record(records: int, rounds: int, peers: bool = True) -> dict[str, float]:
    """Median µs per record of each way of handling the same event (Powertools' when ``peers``)."""
    from cloudq_aws.lambda_.handler import make_handler
    from cloudq_aws.testing import FakeLambdaContext, MotoServer

    from cloudq import App
    from cloudq.interfaces import Delivery

    with (
        tempfile.TemporaryDirectory(prefix="cloudq-lambda-bench-") as workdir,
        MotoServer(workdir=Path(workdir)) as moto,
    ):
        os.environ.update(moto.environment())
        app = App("bench", broker="sqs://?prefix=bench-&wait=0", results="memory://")
        task = app.task(name="bench.noop")(noop)
        handler = make_handler(app)
        broker: Any = app.broker
        queue_url = broker.queue("default").url
        arn = broker.clients.get("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        arn = arn["Attributes"]["QueueArn"]

        def dict_handler(record: Any) -> None:
            noop(*json.loads(record.body)["args"])

        def model_handler(record: Any) -> None:
            noop(*json.loads(record.body)["args"])

        processors: list[tuple[str, Any, Callable[[Any], None]]] = []
        if peers:
            from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
            from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

            processors = [
                (PEERS[0], BatchProcessor(event_type=EventType.SQS), dict_handler),
                (PEERS[1], BatchProcessor(event_type=EventType.SQS, model=SqsRecordModel), model_handler),
            ]
        context = FakeLambdaContext()
        samples: dict[str, list[float]] = {
            "direct call": [],
            "cloudq executor alone": [],
            "cloudq make_handler": [],
            **{name: [] for name, _, _ in processors},
        }
        handler(sqs_event(10, task.name, arn), context)  # warm-up: queue lookup, validator, executor
        for _ in range(rounds):
            event = sqs_event(records, task.name, arn)
            args = [json.loads(r["body"])["args"] for r in event["Records"]]
            deliveries = [(Delivery(r["body"].encode(), None, 1, "default", r["messageId"]),) for r in event["Records"]]
            samples["direct call"].append(timed(call_each, noop, args)[0])
            samples["cloudq executor alone"].append(timed(call_each, app.executor.execute, deliveries)[0])
            event = sqs_event(records, task.name, arn)  # fresh task ids: the executor above stored these
            seconds, response = timed(handler, event, context)
            assert response["batchItemFailures"] == [], response
            samples["cloudq make_handler"].append(seconds)
            for name, processor, record_handler in processors:
                seconds, out = timed(
                    process_partial_response,
                    event=event,
                    record_handler=record_handler,
                    processor=processor,
                    context=context,
                )
                assert out["batchItemFailures"] == [], out
                samples[name].append(seconds)
        app.close()
    return {name: statistics.median(values) / records * 1e6 for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved import rounds per case (default 15)")
    parser.add_argument("--records", type=int, default=1000, help="records per synthetic event (default 1000)")
    parser.add_argument("--rounds", type=int, default=9, help="timed events per system (default 9)")
    parser.add_argument("--quick", action="store_true", help="5 import rounds, 3 events: a CI smoke run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    opts = parser.parse_args(argv)
    runs, rounds = (5, 3) if opts.quick else (opts.runs, opts.rounds)
    missed: list[str] = []
    load_before = os.getloadavg()[0]
    peers = powertools_installed()
    cases = dict(IMPORT_CASES)
    if not peers:
        print("powertools: skipped: not installed (pip install aws-lambda-powertools)")
        cases = {name: code for name, code in cases.items() if "powertools" not in name}

    with tempfile.TemporaryDirectory(prefix="cloudq-import-") as cwd:
        medians = measure(runs, cwd, cases)
        heavy = loaded_modules(APP_MODULE, cwd)
    base = medians[BASELINE]
    print(
        f"import, median of {runs} interleaved runs (python {sys.version.split()[0]}); bare interpreter {base:.1f} ms"
    )
    print(f"{'case':44} {'wall ms':>9} {'over pass':>10}")
    for name, wall in medians.items():
        if name != BASELINE:
            print(f"{name:44} {wall:9.1f} {wall - base:10.1f}")
    ours, boto3 = medians[HANDLER_MODULE] - base, medians[BOTO3] - base
    verdict = "ok" if ours <= boto3 + IMPORT_TARGET_OVER_BOTO3_MS else "MISS"
    print(
        f"handler module - boto3: {ours - boto3:+.1f} ms (target <= +{IMPORT_TARGET_OVER_BOTO3_MS:.0f}) {verdict}; "
        f"ratio handler module / boto3: {ours / boto3:.2f}"
    )
    print(f"heavy modules after the handler module: {', '.join(heavy) or 'none'} (boto3 loads on the first call)")
    if verdict == "MISS":
        missed.append(f"import {ours - boto3:+.1f} ms over boto3")
    if "boto3" in heavy or "botocore" in heavy:
        missed.append("the handler module imports boto3")

    us = per_record(opts.records, rounds, peers)
    print(f"\nper record, median of {rounds} events of {opts.records} records (µs per record)")
    for name, value in us.items():
        print(f"{name:44} {value:9.2f}")
    direct = us["direct call"]
    ours_us = us["cloudq make_handler"] - direct
    print("\nframework overhead per record (minus the direct call):")
    for name in ("cloudq make_handler", *(p for p in PEERS if p in us)):
        print(f"{name:44} {us[name] - direct:9.2f}")
    verdict = "ok" if ours_us <= RECORD_TARGET_US else "MISS"
    print(f"cloudq overhead {ours_us:.2f} µs/record (target <= {RECORD_TARGET_US:.0f}) {verdict}")
    for peer in (p for p in PEERS if p in us):
        print(f"ratio cloudq / {peer}: {ours_us / max(us[peer] - direct, 1e-9):.1f}")
    if verdict == "MISS":
        missed.append(f"{ours_us:.2f} µs per record")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (a busy machine's figures are noisy)")
    if missed:
        print("\ntarget missed: " + "; ".join(missed), file=sys.stderr)
        return 1 if opts.strict else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
