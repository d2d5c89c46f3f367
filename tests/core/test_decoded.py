"""Each delivery's body is parsed once: the revoke check's envelope is the one the executor runs.

Parses are counted by wrapping the envelope validator's ``validate_json`` (the fast path every
body without a signing key takes) and the revoke check's ``peek_id``; nothing else is replaced.
(Log lines and the sampled queue wait still peek at some bodies: not once per record.)
"""

from __future__ import annotations

from typing import Any

import pytest

from cloudq import App, envelope_schema
from cloudq.envelope import build
from cloudq.errors import MalformedMessage
from cloudq.interfaces import Delivery
from cloudq.runtime import decoded, revocations
from cloudq.testing.workers import run_burst


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The bodies parsed as envelopes or peeked at by the revoke check, in order."""
    seen: list[Any] = []

    def counted(parse: Any) -> Any:
        def counting(body: Any) -> Any:
            seen.append(body)
            return parse(body)

        return counting

    monkeypatch.setattr(envelope_schema, "_validate_json", counted(envelope_schema._validate_json))
    monkeypatch.setattr(revocations, "peek_id", counted(revocations.peek_id))
    return seen


def _delivery(task_id: str = "t1", body: bytes | None = None) -> Delivery:
    return Delivery(body or build(task_id, "m.add", [1, 2], {}, sent_at=1.0), object(), 1, "q")


def test_the_held_envelope_is_taken_once_by_the_delivery_itself(decodes: list[Any]) -> None:
    first, twin = _delivery(), _delivery()
    env = decoded.envelope(first, None)
    assert decoded.envelope(first, None) is env and decoded.held(first) is env
    assert decoded.held(twin) is None  # an equal delivery is another message: not its envelope
    assert decoded.take(first, None) is env and decoded.held(first) is None
    assert decoded.take(first, None) == env and len(decodes) == 2  # taken already: decoded again


def test_an_envelope_held_for_another_key_is_decoded_again(decodes: list[Any]) -> None:
    delivery = _delivery(body=build("t1", "m.add", [], {}, sent_at=1.0, key=b"k"))
    decoded.envelope(delivery, None)
    with pytest.raises(MalformedMessage, match="unsigned|signature"):
        decoded.take(_delivery(), b"k")  # held for none: this one is checked with the key
    assert decoded.take(delivery, b"k").id == "t1"


def test_what_is_held_is_bounded_and_forgotten(decodes: list[Any]) -> None:
    deliveries = [_delivery(f"t{i}") for i in range(decoded.LIMIT + 5)]
    for delivery in deliveries:
        decoded.envelope(delivery, None)
    assert decoded.held(deliveries[0]) is None and decoded.held(deliveries[-1]) is not None
    decoded.forget(deliveries[-1])
    assert decoded.held(deliveries[-1]) is None
    for delivery in deliveries:
        decoded.forget(delivery)


@pytest.mark.parametrize("revoke_check", [True, False])
def test_a_worker_run_parses_each_body_once(decodes: list[Any], revoke_check: bool) -> None:
    app = App("once", broker="memory://", results="memory://", revoke_check=revoke_check)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    results = [add.delay(i, 1) for i in range(4)]
    results[1].revoke()
    decodes.clear()
    run_burst(app, concurrency=1)
    assert [r.state for r in results] == ["SUCCESS", "REVOKED", "SUCCESS", "SUCCESS"]
    assert len(decodes) == 4  # the revoked one's too: its envelope says what the task_revoked signal gets


def test_a_lambda_batch_parses_each_body_once(decodes: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudq_aws.lambda_.handler import make_handler
    from cloudq_aws.testing import FakeLambdaContext
    from cloudq_aws.testing.lambda_events import lambda_record

    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any SQS call fails: none is made
    app = App("once", broker="sqs://", results="memory://")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    def record(i: int) -> dict[str, Any]:
        body = build(f"t{i}", add.name, [i, 1], {}, sent_at=1.0).decode()
        attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "ApproximateFirstReceiveTimestamp": "1"}
        message = {"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": body, "Attributes": attributes}
        return lambda_record({**message, "MD5OfBody": ""}, "arn:aws:sqs:us-east-1:123456789012:default", "us-east-1")

    assert make_handler(app)({"Records": [record(i) for i in range(3)]}, FakeLambdaContext()) == {
        "batchItemFailures": []
    }
    assert [app.results.get(f"t{i}").result for i in range(3)] == [1, 2, 3]
    assert len(decodes) == 3
