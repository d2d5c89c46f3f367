"""Poison records in a Lambda SQS batch (issue 10, defect 3): forged cloudq transport attributes and
unreadable message attributes are dead-lettered with their reason, the other records run, and
nothing is reported failed (so nothing comes back to loop)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudq_aws import sqs_messages as msg
from cloudq_aws.lambda_.handler import make_handler
from cloudq_aws.testing import FakeLambdaContext, SQSPoller

from cloudq import App
from cloudq.envelope import Envelope

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def test_forged_records_are_dead_lettered_with_their_reason_and_the_rest_run(sqs: Any, prefix: str) -> None:
    app = App("lambda-poison", broker=f"sqs://?prefix={prefix}&wait=0", results="memory://")
    ran: list[int] = []

    @app.task(name="canary")
    def canary(n: int) -> int:
        ran.append(n)
        return n

    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    envelope = Envelope(id="forged", task="canary", args=[-1]).encode().decode()
    pointer = json.dumps({"cloudq_claim_check": {"bucket": "any-bucket", "key": "k", "size": 1}})
    forged = {
        "b64": ("%%%", {msg.ENCODING: string("base64")}, "attribute 'cloudq-encoding' is base64 but the body is not"),
        "prior": (envelope, {msg.PRIOR_DELIVERIES: string("abc")}, "attribute 'cloudq-prior-deliveries' is 'abc'"),
        "claim": (pointer, {msg.CLAIM_CHECK: string("s3")}, "claim-check pointer to s3://any-bucket/k, but this"),
        "binary": (envelope, {"note": string("x")}, "message attribute 'note' has a binaryValue that is not base64"),
    }
    reasons: dict[str, str] = {}
    results = [canary.delay(0)]
    for i, (body, attributes, reason) in enumerate(forged.values(), start=1):
        sent = sqs.send_message(QueueUrl=poller.queue_url, MessageBody=body, MessageAttributes=attributes)
        reasons[sent["MessageId"]] = reason
        results.append(canary.delay(i))
    messages = poller.receive_all(len(results) + len(forged))
    event = poller.event(messages)
    for record in event["Records"]:  # a record whose attribute Lambda would never write: not base64
        if "note" in record.get("messageAttributes", {}):
            record["messageAttributes"]["note"] = {"dataType": "Binary", "binaryValue": "not base64!"}
    response = make_handler(app)(event, FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    poller.invoke(lambda e, c: response, messages)  # delete the records, as Lambda does on success
    assert sorted(ran) == list(range(len(results)))
    assert [r.get(timeout=5) for r in results] == list(range(len(results)))
    letters = {letter.message_id: letter.reason for letter in app.broker.dead_letters("default")}
    assert set(letters) == set(reasons)
    for message_id, reason in reasons.items():
        assert letters[message_id].startswith(f"MalformedMessage: {reason}"), letters[message_id]
    assert poller.counts() == (0, 0)
