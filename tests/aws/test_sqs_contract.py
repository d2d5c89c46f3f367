"""The broker contract on SQS (standard and FIFO queues) through a moto server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from cloudq_aws.sqs import SQSBroker

from cloudq.config import Settings
from cloudq.testing.broker_contract import BrokerContract

pytestmark = [pytest.mark.aws]


def open_broker(prefix: str, query: str = "") -> SQSBroker:
    return SQSBroker.from_url(f"sqs://?prefix={prefix}{query}", Settings())


class TestSQSBroker(BrokerContract):
    # moto deletes and changes visibility with a stale receipt handle (AWS documents that it may too)
    stale_receipts_ignored: ClassVar[bool] = False
    # SQS's counts are approximate, and a nacked message counts as in flight, not delayed
    exact_stats: ClassVar[bool] = False

    @pytest.fixture
    def broker(self, prefix: str) -> Iterator[SQSBroker]:
        broker = open_broker(prefix)
        yield broker
        broker.close()

    @pytest.fixture
    def broker_with_max_deliveries(self, prefix: str) -> Iterator[tuple[SQSBroker, int]]:
        broker = open_broker(prefix, "&max_receive_count=2")
        yield broker, 2
        broker.close()


class TestSQSFifoBroker(TestSQSBroker):
    # on FIFO queues release ends the lease with visibility 0 (resending would reorder the
    # group), and SQS counts that receive
    release_keeps_delivery_count: ClassVar[bool] = False

    @pytest.fixture
    def broker(self, prefix: str) -> Iterator[SQSBroker]:
        broker = open_broker(prefix, "&fifo=true")
        yield broker
        broker.close()

    @pytest.fixture
    def broker_with_max_deliveries(self, prefix: str) -> Iterator[tuple[SQSBroker, int]]:
        broker = open_broker(prefix, "&fifo=true&max_receive_count=2")
        yield broker, 2
        broker.close()
