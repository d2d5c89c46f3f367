"""Forged cloudq transport attributes on Pub/Sub: published raw with Google's own client between
valid canaries, each bad message is dead-lettered once with its reason and the canaries succeed."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cloudq_gcp import deferral
from cloudq_gcp.pubsub import PubSubBroker
from cloudq_gcp.pubsub_admin import QueuePaths, queue_paths
from cloudq_gcp.pubsub_messages import CLAIM, DEAD_REASON
from gcp_apps import gcp_app, run_burst

from cloudq import App, states
from cloudq.envelope import Envelope
from cloudq.task import Task

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(120)]

# attribute -> the reason it must be dead-lettered with (after "MalformedMessage: ")
FORGED = {
    "nb-inf": ({deferral.NOT_BEFORE: "inf"}, "cloudq-not-before 'inf' is not a time between 1970 and 9999"),
    "nb-nan": ({deferral.NOT_BEFORE: "nan"}, "cloudq-not-before 'nan' is not a time between 1970 and 9999"),
    "nb-abc": ({deferral.NOT_BEFORE: "abc"}, "cloudq-not-before 'abc' is not a number of epoch seconds"),
    "nb-huge": ({deferral.NOT_BEFORE: "1e300"}, "cloudq-not-before '1e300' is not a time between 1970 and 9999"),
    "nb-negative": ({deferral.NOT_BEFORE: "-5"}, "cloudq-not-before '-5' is not a time between 1970 and 9999"),
    "prior-abc": ({deferral.PRIOR: "abc"}, "cloudq-prior 'abc' is not a whole number of deliveries"),
    "prior-negative": ({deferral.PRIOR: "-1"}, "cloudq-prior '-1' is not a whole number of deliveries"),
    "prior-huge": ({deferral.PRIOR: str(10**40)}, "cloudq-prior '1000000000000000000000000000000000000000...' is not"),
    "claim-no-bucket": ({CLAIM: "gs://elsewhere/key"}, "cloudq-claim 'gs://elsewhere/key' points to Cloud Storage"),
    "claim-empty": ({CLAIM: ""}, "cloudq-claim '' points to Cloud Storage, but this broker has no ?bucket="),
}


@pytest.fixture
def app(pubsub_emulator, firestore_emulator, project: str, unique: str) -> Iterator[App]:
    application = gcp_app(project, unique)
    yield application
    application.close()


def publish_raw(topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> None:
    """Publish with the plain Google client, as a producer outside cloudq would."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    try:
        for future in [publisher.publish(topic, data, **attributes) for data, attributes in messages]:
            future.result(timeout=30)
    finally:
        publisher.stop()


def pull_dead(subscription: str, expect: int) -> list[Any]:
    """Every message on the dead-letter subscription (acked: this test owns it)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    got: list[Any] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < expect and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=1, timeout=5)  # 4 MiB gRPC default
            got += [m.message for m in response.received_messages]
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
                )
    finally:
        subscriber.close()
    return got


def prepared(app: App) -> tuple[Task[..., int], PubSubBroker, QueuePaths]:
    """An ``add`` task, the app's broker and its queue's paths, the topics and subscriptions made."""

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    broker = app.broker
    assert isinstance(broker, PubSubBroker)
    queue = app.queues()[0]
    broker.stats(queue)  # creates the queue's topics and subscriptions
    return add, broker, queue_paths(broker.options, queue)


def test_forged_attributes_are_dead_lettered_once_each_and_the_canaries_run(app: App) -> None:
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    queue = app.queues()[0]
    first = add.delay(1, 1)  # also creates the topic and subscriptions
    broker = app.broker
    assert isinstance(broker, PubSubBroker)
    paths = queue_paths(broker.options, queue)
    raw: list[tuple[bytes, dict[str, str]]] = []
    for i, (name, (attributes, _)) in enumerate(FORGED.items()):
        body = Envelope(id=name, task=add.name, args=[i, 0]).encode()
        canary = Envelope(id=f"canary-{i}", task=add.name, args=[i, 100]).encode()
        raw += [(body, attributes), (canary, {})]
    publish_raw(paths.topic, raw)
    last = add.delay(2, 2)

    worker = run_burst(app, timeout=60, unreachable_timeout_s=10)

    assert first.get(timeout=10) == 2 and last.get(timeout=10) == 4
    for i in range(len(FORGED)):
        assert app.AsyncResult(f"canary-{i}").get(timeout=10) == i + 100
    dead = pull_dead(paths.dead_subscription, len(FORGED))
    reasons = {json.loads(m.data)["id"]: m.attributes[DEAD_REASON] for m in dead}
    assert sorted(reasons) == sorted(FORGED)  # each once: no duplicates, none missing
    for name, (_, reason) in FORGED.items():
        assert reasons[name].startswith(f"MalformedMessage: {reason}"), (name, reasons[name])
        assert app.AsyncResult(name).status == states.PENDING  # never ran
    assert all(m.attributes[deferral.PRIOR] == "1" for m in dead)  # dead-lettered on its first delivery
    assert worker.counts["dead_letter"] == len(FORGED)


def push_request(subscription: str, body: bytes, attributes: dict[str, str], message_id: str) -> bytes:
    message = {"data": base64.b64encode(body).decode(), "attributes": attributes, "messageId": message_id}
    return json.dumps({"message": message, "subscription": subscription, "deliveryAttempt": 1}).encode()


def test_a_forged_push_is_dead_lettered_with_its_reason_and_answered_200(app: App) -> None:
    from cloudq_gcp.push import PushHandler

    add, broker, paths = prepared(app)
    queue = app.queues()[0]
    handler = PushHandler(app)
    for i, (name, (attributes, reason)) in enumerate(FORGED.items()):
        body = Envelope(id=name, task=add.name, args=[i, 0]).encode()
        answer = handler.handle(push_request(paths.subscription, body, attributes, f"m-{i}"), None)
        assert (answer.status, answer.body["outcome"]) == (200, "dead-lettered"), (name, answer)
        assert answer.body["reason"].startswith(f"MalformedMessage: {reason}"), (name, answer.body)
        canary = Envelope(id=f"push-canary-{i}", task=add.name, args=[i, 1]).encode()
        answer = handler.handle(push_request(paths.subscription, canary, {}, f"c-{i}"), None)
        assert (answer.status, answer.body["outcome"]) == (200, "succeeded"), answer
    letters = {letter.message_id: letter.reason for letter in broker.dead_letters(queue)}
    assert sorted(letters) == sorted(f"m-{i}" for i in range(len(FORGED)))
    assert all(app.AsyncResult(name).status == states.PENDING for name in FORGED)


def test_large_bad_bodies_are_dead_lettered_without_failing_their_batch(app: App) -> None:
    """Three bad bodies of 4 MB share a reason (12 MB of dead letters: more than one request), and
    one filled to Pub/Sub's limit by another producer no longer fits with a reason at all."""

    add, _, paths = prepared(app)
    large = [(bytes([65 + i]) * 4_000_000, {}) for i in range(3)]
    full = (b"{" * 9_999_800, {})  # about the largest request Pub/Sub takes: no room left for a reason
    canaries = [(Envelope(id=f"big-canary-{i}", task=add.name, args=[i, 7]).encode(), {}) for i in range(2)]
    publish_raw(paths.topic, [canaries[0], *large, full, canaries[1]])

    worker = run_burst(app, timeout=60, unreachable_timeout_s=10)

    assert [app.AsyncResult(f"big-canary-{i}").get(timeout=10) for i in range(2)] == [7, 8]
    dead = pull_dead(paths.dead_subscription, 4)
    assert sorted(len(m.data) for m in dead) == [0, 4_000_000, 4_000_000, 4_000_000]
    for m in dead:
        assert m.attributes[DEAD_REASON].startswith("MalformedMessage: body is not JSON")
        assert m.attributes[deferral.PRIOR] == "1"  # dead-lettered on the first delivery, nothing looped
    [kept_out] = [m for m in dead if not m.data]
    assert "body of 9999800 bytes not kept: too large for Pub/Sub with the reason" in kept_out.attributes[DEAD_REASON]
    assert worker.counts["dead_letter"] == 4
