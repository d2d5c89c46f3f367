"""The broker and result-store contracts on the in-process backend."""

from __future__ import annotations

from typing import ClassVar

import pytest

from cloudq.backends.memory import MemoryBroker, MemoryResultStore
from cloudq.testing import BrokerContract, ResultStoreContract

SMALL_BODY_LIMIT = 64 * 1024  # keeps the size-limit tests light


class TestMemoryBroker(BrokerContract):
    lease_seconds: ClassVar[float] = 0.5
    delay_seconds: ClassVar[float] = 0.5

    @pytest.fixture
    def broker(self) -> MemoryBroker:
        return MemoryBroker(max_body_bytes=SMALL_BODY_LIMIT)

    @pytest.fixture
    def broker_with_max_deliveries(self) -> tuple[MemoryBroker, int]:
        return MemoryBroker(max_deliveries=3), 3


class TestMemoryResultStore(ResultStoreContract):
    @pytest.fixture
    def store(self) -> MemoryResultStore:
        return MemoryResultStore()
