"""Presence on the cloud stores, with what it costs counted at the server: DynamoDB (moto) for a
container worker and a Lambda instance, Firestore (emulator) through the store's own count.

Printed figures (``-s``) are the README's: requests per worker-hour at the default 30 s."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cloudq_aws.dynamodb import DynamoDBResultStore
from cloudq_aws.lambda_.handler import LambdaHandler
from cloudq_aws.testing import FakeLambdaContext, MotoServer, SQSPoller

from cloudq import App
from cloudq.config import Settings
from cloudq.interfaces import Heartbeat
from cloudq.runtime.presence import Presence, Tracker
from cloudq.testing.waiting import wait_for
from cloudq.testing.workers import run_burst

pytestmark = pytest.mark.timeout(180)
HOUR_S = 3600
INTERVAL_S = 30  # the default presence_interval


def per_hour(requests_per_beat: float) -> float:
    return requests_per_beat * HOUR_S / INTERVAL_S


@pytest.mark.aws
def test_a_dynamodb_beat_is_one_put_and_listing_is_one_query(aws: MotoServer, prefix: str) -> None:
    store = DynamoDBResultStore.from_url(f"dynamodb://{prefix}results", Settings())
    store.get("warm-up")  # creates the table (and its index) outside the counted part
    presences = [Presence(store, f"w{i}", {"queues": ["default"]}, INTERVAL_S, Tracker()) for i in range(3)]
    with aws.count_requests() as counts:
        for _ in range(4):
            for presence in presences:
                assert presence.beat()
        beats = store.alive()
    assert sorted(b.worker_id for b in beats) == ["w0", "w1", "w2"]
    assert counts.of("dynamodb") == {"PutItem": 12, "Query": 1}  # no Scan, ever
    print(f"\nDynamoDB presence: {per_hour(1):.0f} PutItem per worker-hour (<1 KB each: 1 WCU + 1 GSI WCU); "
          f"`cloudq status`: 1 Query for all workers")  # fmt: skip
    store.close()


@pytest.mark.aws
def test_an_old_table_without_the_index_says_so_or_gets_it(aws: MotoServer, prefix: str) -> None:
    import boto3

    db = boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1")
    table = f"{prefix}old"
    db.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    strict = DynamoDBResultStore(table, create_missing=False)
    with pytest.raises(Exception, match="has no index cloudq-recent.*cloudq deploy"):
        strict.alive()
    store = DynamoDBResultStore(table)
    with pytest.raises(Exception, match="being added"):
        store.alive()
    indexes = db.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
    assert [index["IndexName"] for index in indexes] == ["cloudq-recent"]
    assert store.alive() == []
    store.beat(Heartbeat("w", time.time(), {}), 60)
    assert [b.worker_id for b in store.alive()] == ["w"]


@pytest.mark.aws
def test_a_worker_on_sqs_and_dynamodb_lists_its_running_task(aws: MotoServer, prefix: str) -> None:
    results = f"dynamodb://{prefix}results"
    app = App("pres-aws", broker=f"sqs://?prefix={prefix}&wait=1", results=results, presence_interval=0.2)
    seen: list[Any] = []

    @app.task(name="look")
    def look() -> None:  # runs inside the worker: its record lists this task as active
        seen.append(wait_for(lambda: [b for b in app.results.alive() if b.info["active"]], 20, 0.05, "active"))  # type: ignore[attr-defined]

    handle = app.send_task("look")
    run_burst(app, concurrency=1)
    [[beat]] = seen
    assert beat.info["active"][0]["id"] == handle.id and beat.info["runtime"] == "worker"
    assert app.results.alive() == []  # type: ignore[attr-defined]  # it said goodbye on stopping


@pytest.mark.aws
def test_a_lambda_instance_writes_once_per_interval_however_many_batches(
    aws: MotoServer, sqs: Any, prefix: str
) -> None:
    app = App("pres-lambda", broker=f"sqs://?prefix={prefix}&wait=0", results=f"dynamodb://{prefix}results")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    handler = LambdaHandler(app)
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    for i in range(30):
        add.delay(i, i)
    app.results.get("warm-up")  # creates the table outside the counted part
    with aws.count_requests() as counts:
        for _ in range(3):  # three invocations of 10 records, well within one interval
            poller.invoke(handler, poller.receive_all(10), FakeLambdaContext())
    dynamodb = counts.of("dynamodb")
    assert dynamodb["PutItem"] == 30 + 1  # a result per task, one presence record for the instance
    [beat] = app.results.alive()  # type: ignore[attr-defined]
    assert beat.info["runtime"] == "lambda" and beat.info["hostname"].startswith("lambda@")
    assert beat.info["counts"]["succeeded"] >= 1  # written after the instance's first task


@pytest.mark.gcp
def test_a_firestore_beat_is_one_write_and_listing_is_one_query(
    firestore_emulator: Any, project: str, unique: str
) -> None:
    from cloudq_gcp.firestore import FirestoreResultStore
    from cloudq_gcp.options import FirestoreOptions

    store = FirestoreResultStore(FirestoreOptions(project, f"results-{unique}", timeout=10))
    presences = [Presence(store, f"w{i}", {}, INTERVAL_S, Tracker()) for i in range(3)]
    store.requests.clear()
    for _ in range(4):
        for presence in presences:
            assert presence.beat()
    assert sorted(b.worker_id for b in store.alive()) == ["w0", "w1", "w2"]
    assert dict(store.requests) == {"set": 12, "_stream": 1}
    print(f"\nFirestore presence: {per_hour(1):.0f} writes per worker-hour; `cloudq status`: 1 query, "
          "billed one read per live worker")  # fmt: skip
    store.close()


@pytest.mark.gcp
def test_a_push_instance_writes_once_per_interval_however_many_requests(
    pubsub_emulator: Any, project: str, unique: str
) -> None:
    import base64
    import json

    from cloudq_gcp.pubsub_admin import queue_paths
    from cloudq_gcp.push.handler import PushHandler

    from cloudq.envelope import build

    broker = f"pubsub://{project}?prefix=t{unique}-&ack_deadline=10&timeout=10"
    app = App("pres-push", broker=broker, results="memory://")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    app.broker.stats("default")  # creates the queue's topic and subscription
    subscription = queue_paths(app.broker.options, "default").subscription  # type: ignore[attr-defined]
    handler = PushHandler(app)
    written = []
    for i in range(5):
        data = build(f"t{i}", "add", [i, i], {}, sent_at=time.time())
        message = {"data": base64.b64encode(data).decode(), "messageId": f"m{i}", "attributes": {}}
        response = handler.handle(json.dumps({"message": message, "subscription": subscription}).encode(), None)
        assert response.status == 200, response.payload()
        written.append(handler.presence.presence.written if handler.presence.presence else 0)
    assert written == [1, 1, 1, 1, 1]  # the first request wrote the record; the others were within the interval
    [beat] = app.results.alive()  # type: ignore[attr-defined]
    assert beat.info["runtime"] == "push" and beat.info["counts"]["succeeded"] == 1
