"""The redrive contract on SQS (standard and FIFO queues) through the moto server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cloudq_aws.sqs import SQSBroker

from cloudq.config import Settings
from cloudq.testing import RedriveContract

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
