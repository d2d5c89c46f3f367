"""The redrive contract on Pub/Sub through Google's emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cloudq_gcp.options import PubSubOptions
from cloudq_gcp.pubsub import PubSubBroker

from cloudq.testing import RedriveContract

pytestmark = [pytest.mark.gcp]


class TestPubSubRedrive(RedriveContract):
    @pytest.fixture
    def broker(self, pubsub_emulator: object, project: str, unique: str) -> Iterator[PubSubBroker]:
        broker = PubSubBroker(PubSubOptions(project, prefix=f"r{unique}-", ack_deadline=10, timeout=10))
        yield broker
        broker.close()


class TestPubSubRedriveWithDeadLetterPolicy(TestPubSubRedrive):
    """Pub/Sub counts deliveries itself here (``delivery_attempt``): a redriven copy starts at 1."""

    @pytest.fixture
    def broker(self, pubsub_emulator: object, project: str, unique: str) -> Iterator[PubSubBroker]:
        options = PubSubOptions(project, prefix=f"p{unique}-", ack_deadline=10, timeout=10, max_delivery_attempts=5)
        broker = PubSubBroker(options)
        yield broker
        broker.close()
