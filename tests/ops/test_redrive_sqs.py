"""The redrive contract on SQS (standard and FIFO queues) through the moto server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cloudq_aws.sqs import SQSBroker

from cloudq.config import Settings
from cloudq.interfaces import OutgoingMessage
from cloudq.testing import RedriveContract, eventually, receive_until

pytestmark = [pytest.mark.aws]


class TestSQSRedrive(RedriveContract):
    query = ""

    @pytest.fixture
    def broker(self, prefix: str) -> Iterator[SQSBroker]:
        broker = SQSBroker.from_url(f"sqs://?prefix={prefix}{self.query}", Settings())
        yield broker
        broker.close()


class TestSQSFifoRedrive(TestSQSRedrive):
    query = "&fifo=true"


def test_a_message_the_redrive_policy_moved_comes_back_with_all_its_attributes(prefix: str) -> None:
    """SQS itself dead-lettered it (maxReceiveCount): no cloudq attribute says its id or reason; the
    copy keeps the id the listing showed, the user's attributes, and starts its count over."""
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}&max_receive_count=1", Settings())
    attributes = {f"a{i}": str(i) for i in range(5)}
    broker.send("native", [OutgoingMessage(b"poison", attributes=attributes)])
    for _ in range(2):  # the second receive finds it over maxReceiveCount: SQS moves it
        receive_until(broker, "native", 1, lease_s=1, timeout=5)
    [letter] = eventually(lambda: broker.dead_letters("native"), bool, 15)
    assert letter.reason.startswith("MaxReceiveCount")
    assert broker.redrive("native") == 1
    [back] = receive_until(broker, "native", 1, lease_s=30, timeout=15)
    assert (back.body, dict(back.attributes), back.delivery_count) == (b"poison", attributes, 1)
    assert back.message_id == letter.message_id
    broker.close()
