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
