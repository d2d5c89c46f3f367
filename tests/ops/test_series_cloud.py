"""The rolling series in presence records on SQS + DynamoDB (the moto server over HTTP): a real
worker's and a Lambda instance's records carry what they ran, still in one PutItem per beat; and
the record's size at an hour of three busy queues, with what it costs in write units.

Printed figures (``-s``) are the README's."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from cloudq_aws.dynamodb import DynamoDBResultStore
from cloudq_aws.lambda_.handler import LambdaHandler
from cloudq_aws.testing import FakeLambdaContext, MotoServer, SQSPoller

from cloudq import App
from cloudq.config import Settings
from cloudq.runtime import series as ts
from cloudq.runtime.presence import Presence, Tracker
from cloudq.testing.waiting import wait_for
from cloudq.testing.workers import running_worker

pytestmark = [pytest.mark.aws, pytest.mark.timeout(180)]
BEATS_PER_HOUR = 3600 / 30  # at the default presence_interval


def hour_of(beat_info: dict[str, Any]) -> ts.Minute:
    found = ts.decode(beat_info.get("series"))
    assert found is not None, "the record carries a series"
    return found.summed()


def test_a_workers_record_on_dynamodb_carries_the_runs_in_one_put(aws: MotoServer, prefix: str) -> None:
    app = App("series-aws", broker=f"sqs://?prefix={prefix}&wait=1", results=f"dynamodb://{prefix}results")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    handles = [add.delay(i, i) for i in range(12)]
    try:
        with running_worker(app, concurrency=4) as worker:
            wait_for(lambda: all(h.ready() for h in handles), 60, 0.2, "the tasks done")
            presence = wait_for(lambda: worker.presence, what="the worker's presence")
            wait_for(lambda: presence.tracker.counts["succeeded"] == 12, what="the runs counted")
            with aws.count_requests() as counts:
                assert presence.beat()
            [beat] = app.results.alive()  # type: ignore[attr-defined]
        assert counts.of("dynamodb") == {"PutItem": 1}, "the series rides in the record's one write"
        hour = hour_of(dict(beat.info))
        assert (hour.succeeded, hour.failed, hour.run.count) == (12, 0, 12)
        assert 1 <= hour.wait.count <= 12  # waits are sampled (at most one body parse per 50 ms)
        assert hour.wait.max_ms >= hour.wait.quantile(0.5) * 1000 >= 0  # type: ignore[operator]
    finally:
        app.close()


def test_a_lambda_instances_record_carries_its_batches(aws: MotoServer, sqs: Any, prefix: str) -> None:
    app = App("series-lambda", broker=f"sqs://?prefix={prefix}&wait=0", results=f"dynamodb://{prefix}results")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    handler = LambdaHandler(app)
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    for i in range(20):
        add.delay(i, i)
    try:
        for _ in range(2):
            poller.invoke(handler, poller.receive_all(10), FakeLambdaContext())
        instance = handler.presence.presence
        assert instance is not None
        assert instance.beat()  # the next interval's write, now
        [beat] = app.results.alive()  # type: ignore[attr-defined]
        assert beat.info["runtime"] == "lambda" and hour_of(dict(beat.info)).succeeded == 20
    finally:
        app.close()


def test_an_hour_of_three_busy_queues_stays_a_few_kilobytes(aws: MotoServer, prefix: str) -> None:
    store = DynamoDBResultStore.from_url(f"dynamodb://{prefix}results", Settings())
    store.get("warm-up")  # creates the table outside the counted part
    now = [1_800_000_000.0]
    tracker = Tracker(lambda: now[0])
    spread = random.Random(3)
    for _ in range(60):
        for queue in ("default", "emails", "reports"):
            for _ in range(300):
                outcome = spread.choice(("succeeded",) * 8 + ("failed", "retried"))
                tracker.series.record(queue, outcome, spread.lognormvariate(-2, 1.5), spread.lognormvariate(0, 2))
        now[0] += 60
    now[0] -= 60
    presence = Presence(
        store,
        "busy",
        {"hostname": "cloudq@busy", "queues": ["default", "emails", "reports"]},
        30,
        tracker,
        clock=lambda: now[0],
    )
    with aws.count_requests() as counts:
        assert presence.beat()
    assert counts.of("dynamodb") == {"PutItem": 1}
    [beat] = [b for b in store.alive() if b.worker_id == "busy"]
    assert ts.decode(beat.info["series"]) == tracker.series.snapshot(), "read back as written"
    size = len(json.dumps(dict(beat.info), separators=(",", ":")).encode())
    assert size < 8 * 1024, size
    units = math.ceil(size / 1024)
    print(
        f"\npresence record with 3 busy queues x 60 min: {size} bytes -> {units} WCU per PutItem (+{units} on the "
        f"index): {BEATS_PER_HOUR:.0f} PutItem per worker-hour as before, {2 * units * BEATS_PER_HOUR:.0f} write "
        "units instead of 240"
    )
    store.close()
