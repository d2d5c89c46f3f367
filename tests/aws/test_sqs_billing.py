"""Billed SQS requests (each 64 KiB of a request's messages bills as one), counted at the moto
server, and batch sends cut where they bill the fewest chunks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cloudq_aws.sqs import SQSBroker
from cloudq_aws.testing import MotoServer

from cloudq.config import Settings
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


@pytest.fixture
def broker(prefix: str) -> Iterator[SQSBroker]:
    b = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    yield b
    b.close()


def test_the_server_bills_each_started_64_kib_of_messages_sent_and_received(broker: SQSBroker, aws: MotoServer) -> None:
    broker.queue("big")
    with aws.count_requests() as sent:
        broker.send("big", [OutgoingMessage(b"x" * 200_000, attributes={"k": "v"})])  # 3.05 chunks
    assert sent.of("sqs") == {"SendMessage": 1}
    assert sent.billed.of("sqs") == {"SendMessage": 4}
    with aws.count_requests() as received:
        (got,) = broker.receive("big", 10, 30, wait_s=1)
        broker.ack([got])
    assert received.of("sqs") == {"ReceiveMessage": 1, "DeleteMessageBatch": 1}
    assert received.billed.of("sqs") == {"ReceiveMessage": 4, "DeleteMessageBatch": 1}
    with aws.count_requests() as empty:
        assert broker.receive("big", 10, 30, wait_s=0) == []
    assert empty.billed.of("sqs") == {"ReceiveMessage": 1}


def test_batch_sends_of_20_kb_bodies_go_by_nines_billing_a_sixth_less(broker: SQSBroker, aws: MotoServer) -> None:
    broker.queue("mid")
    body = b"y" * 20_000
    with aws.count_requests() as sent:
        broker.send("mid", [OutgoingMessage(body) for _ in range(30)])
    # by tens: 3 requests of 200 KB, 4 chunks each (12 billed); by nines: 3 + 3 + 3 + 1
    assert sent.of("sqs") == {"SendMessageBatch": 4}
    assert sent.billed.of("sqs") == {"SendMessageBatch": 10}
    got: list = []
    while len(got) < 30:
        batch = broker.receive("mid", 10, 30, wait_s=1)
        assert batch, "the messages did not arrive"
        got += batch
    assert sorted(d.body for d in got) == [body] * 30
