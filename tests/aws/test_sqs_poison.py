"""Poison messages on SQS: forged cloudq transport attributes and large bad bodies, sent raw with
boto3 between valid canaries, must each be dead-lettered once with their reason while the rest of
the batch runs (issue 10, defects 3 and 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws import sqs_messages as msg
from cloudq_aws.sqs import SQSBroker

from cloudq import App, states
from cloudq.envelope import Envelope

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def forged_cases(app: App, bucket: str) -> dict[str, tuple[dict[str, Any], str]]:
    """task id -> (SendMessage fields, the start of the reason expected after 'MalformedMessage: ')."""
    prefix = app.broker.prefix  # type: ignore[attr-defined]
    own_key = f"{prefix}cloudq/{prefix}default/never-written"

    def pointer(bucket_name: str, key: str) -> str:
        return json.dumps({"cloudq_claim_check": {"bucket": bucket_name, "key": key, "size": 10}})

    cases = {
        "b64": ("body-not-base64", {msg.ENCODING: string("base64")}, "attribute 'cloudq-encoding' is base64 but"),
        "enc": (None, {msg.ENCODING: string("rot13")}, "attribute 'cloudq-encoding' is 'rot13', not base64"),
        "empty": (None, {msg.ENCODING: string("empty")}, "attribute 'cloudq-encoding' is empty but the body"),
        "plain-claim": (None, {msg.CLAIM_CHECK: string("s3")}, "message marked as a claim check has no valid"),
        "claim-kind": (None, {msg.CLAIM_CHECK: string("gcs")}, "attribute 'cloudq-claim-check' is 'gcs'"),
        "gone": (pointer(bucket, own_key), {msg.CLAIM_CHECK: string("s3")}, "ClaimCheckMissing: payload object"),
        "elsewhere": (
            pointer("someone-elses-bucket", "secret"),
            {msg.CLAIM_CHECK: string("s3")},
            "claim-check pointer to s3://someone-elses-bucket/secret, outside this broker's",
        ),
        "prior-abc": (None, {msg.PRIOR_DELIVERIES: string("abc")}, "attribute 'cloudq-prior-deliveries' is 'abc'"),
        "prior-neg": (None, {msg.PRIOR_DELIVERIES: string("-1")}, "attribute 'cloudq-prior-deliveries' is '-1'"),
        "prior-huge": (None, {msg.PRIOR_DELIVERIES: string("9" * 40)}, "attribute 'cloudq-prior-deliveries' is"),
        "prior-binary": (
            None,
            {msg.PRIOR_DELIVERIES: {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
            "attribute 'cloudq-prior-deliveries' is 'AAE='",
        ),
        "msgid": (None, {msg.MESSAGE_ID: string("x" * 300)}, "attribute 'cloudq-message-id' is"),
    }
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for name, (body, attributes, reason) in cases.items():
        task_id = f"forged-{name}"
        envelope = Envelope(id=task_id, task="canary", args=[-1]).encode().decode()
        fields = {"MessageBody": body or envelope, "MessageAttributes": attributes}
        out[task_id] = (fields, reason)
    return out


def test_forged_transport_attributes_are_dead_lettered_and_the_batch_runs(prefix: str, bucket: str) -> None:
    app = sqs_app(prefix, f"&bucket={bucket}&visibility=30")

    @app.task(name="canary")
    def canary(n: int) -> int:
        if n < 0:
            raise AssertionError("a forged message ran")
        return n * 2

    @app.task(name="big")
    def big(text: str) -> int:
        return len(text)

    large = big.delay("z" * 1_100_000)  # a genuine claim check in the same batch (and the bucket exists)
    cases = forged_cases(app, bucket)
    sqs = app.broker.clients.get("sqs")  # type: ignore[attr-defined]
    url = app.broker.queue("default").url  # type: ignore[attr-defined]
    canaries = [canary.delay(0)]
    sent: dict[str, str] = {}  # SQS message id -> task id
    for i, (task_id, (fields, _)) in enumerate(cases.items(), start=1):
        sent[sqs.send_message(QueueUrl=url, **fields)["MessageId"]] = task_id
        canaries.append(canary.delay(i))

    run_burst(app, timeout=90)

    assert [r.get(timeout=5) for r in canaries] == [2 * i for i in range(len(canaries))]
    assert large.get(timeout=5) == 1_100_000
    # each bad message is on the dead-letter queue once, with its reason as a message attribute
    stats = app.broker.stats("default")
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead_lettered) == (0, 0, 0, len(cases))
    letters = {letter.message_id: letter for letter in app.broker.dead_letters("default")}
    assert set(letters) == set(sent)
    for message_id, task_id in sent.items():
        reason = letters[message_id].reason
        assert reason.startswith(f"MalformedMessage: {cases[task_id][1]}"), (task_id, reason)
        assert app.AsyncResult(task_id).status == states.PENDING  # never ran
    assert letters[next(k for k, v in sent.items() if v == "forged-b64")].body == b"body-not-base64"
    assert all(letter.reason.startswith("MalformedMessage: ") for letter in letters.values())


def test_large_bad_bodies_with_one_reason_are_moved_in_requests_under_the_byte_limit(prefix: str) -> None:
    app = sqs_app(prefix)
    broker = app.broker
    assert isinstance(broker, SQSBroker)
    sqs = broker.clients.get("sqs")
    url = broker.queue("default").url
    bodies = [bytes([65 + i]) * 300_000 for i in range(4)]  # 1.2 MB together, over SendMessageBatch's 1 MiB
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body.decode())
    got = []
    while len(got) < len(bodies):
        batch = broker.receive("default", 10, 30, wait_s=1)
        assert batch, "the messages did not arrive"
        got += batch
    broker.dead_letter(got, "MalformedMessage: body is not JSON")
    letters = broker.dead_letters("default")
    assert sorted(letter.body for letter in letters) == bodies
    assert {letter.reason for letter in letters} == {"MalformedMessage: body is not JSON"}
    stats = broker.stats("default")
    assert (stats.ready, stats.in_flight, stats.dead_lettered) == (0, 0, 4)


def test_batch_sends_are_split_by_the_target_queues_batch_byte_limit() -> None:
    entries = [msg.Entry("x" * 100_000) for _ in range(12)] + [msg.Entry("y")]
    for max_message, limit, count in ((262_144, 262_144, 6), (1_048_576, 1_048_576, 2), (1024, 262_144, 6)):
        chunks = list(msg.entry_batches(entries, max_message))
        assert [e for chunk in chunks for e in chunk] == entries
        assert all(len(chunk) <= 10 and sum(e.size for e in chunk) <= limit for chunk in chunks)
        assert len(chunks) == count, [len(c) for c in chunks]
