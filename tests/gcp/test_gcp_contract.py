"""The shared broker and result-store contracts on Google's emulators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from cloudq_gcp.firestore import FirestoreResultStore
from cloudq_gcp.options import FirestoreOptions, PubSubOptions
from cloudq_gcp.pubsub import PubSubBroker
from test_gcp_offload import bucket

from cloudq.testing import BrokerContract, ResultStoreContract, unique_queue

__all__ = ["bucket"]  # the fixture, used by name

pytestmark = pytest.mark.gcp


class TestPubSubBroker(BrokerContract):
    # Pub/Sub reports backlog only through Cloud Monitoring, which the emulator lacks
    exact_stats: ClassVar[bool] = False

    @pytest.fixture
    def broker(self, pubsub_emulator, project: str, unique: str) -> Iterator[PubSubBroker]:
        options = PubSubOptions(project, prefix=f"c{unique}-", ack_deadline=10, ordered=("ordered-*",), timeout=10)
        broker = PubSubBroker(options)
        yield broker
        broker.close()

    @pytest.fixture
    def queue(self, request: pytest.FixtureRequest) -> str:
        # the ordering test gets an ordered queue; the rest run on plain ones, the default
        return unique_queue("ordered" if "ordering" in request.node.name else "cq")

    @pytest.fixture
    def broker_with_max_deliveries(
        self, pubsub_emulator, project: str, unique: str
    ) -> Iterator[tuple[PubSubBroker, int]]:
        # not ordered: the emulator never dead-letters from an ordered subscription (it drops the message)
        broker = PubSubBroker(PubSubOptions(project, prefix=f"m{unique}-", ack_deadline=10, max_delivery_attempts=5))
        yield broker, 5
        broker.close()


class TestFirestore(ResultStoreContract):
    @pytest.fixture
    def store(self, firestore_emulator, project: str, unique: str) -> Iterator[FirestoreResultStore]:
        store = FirestoreResultStore(FirestoreOptions(project, f"results-{unique}", timeout=10))
        yield store
        store.close()

    @pytest.fixture
    def offloading_store(
        self, firestore_emulator, bucket: str, project: str, unique: str
    ) -> Iterator[FirestoreResultStore]:
        store = FirestoreResultStore(FirestoreOptions(project, f"results-{unique}", timeout=10, bucket=bucket))
        yield store
        store.close()
