"""``cloudq worker --burst`` on Pub/Sub with Firestore results (Google's emulators): the burst contract."""

from __future__ import annotations

import pytest
from gcp_apps import gcp_urls

from cloudq.testing import BurstContract
from cloudq.testing.burst_contract import closed_port

pytestmark = [pytest.mark.gcp, pytest.mark.slow]


class TestPubSubBurst(BurstContract):
    @pytest.fixture
    def burst_env(self, pubsub_emulator, firestore_emulator, project: str, unique: str) -> dict[str, str]:
        broker, results = gcp_urls(project, unique)
        return {"CLOUDQ_BROKER": broker, "CLOUDQ_RESULTS": results}

    @pytest.fixture
    def unreachable_env(self, pubsub_emulator, project: str, unique: str) -> tuple[dict[str, str], str]:
        host = f"127.0.0.1:{closed_port()}"
        broker, _ = gcp_urls(project, unique, "&timeout=2")
        return {"CLOUDQ_BROKER": broker, "CLOUDQ_RESULTS": "memory://", "PUBSUB_EMULATOR_HOST": host}, host
