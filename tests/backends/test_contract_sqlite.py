"""The broker and result-store contracts on the embedded SQLite backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from cloudq.backends.sqlite import SQLiteBroker, SQLiteResultStore
from cloudq.testing import BrokerContract, ResultStoreContract

SMALL_BODY_LIMIT = 64 * 1024  # keeps the size-limit tests light


class TestSQLiteBroker(BrokerContract):
    lease_seconds: ClassVar[float] = 0.5
    delay_seconds: ClassVar[float] = 0.5

    @pytest.fixture
    def broker(self, tmp_path: Path) -> Iterator[SQLiteBroker]:
        broker = SQLiteBroker(str(tmp_path / "cloudq.db"), max_body_bytes=SMALL_BODY_LIMIT)
        yield broker
        broker.close()

    @pytest.fixture
    def broker_with_max_deliveries(self, tmp_path: Path) -> Iterator[tuple[SQLiteBroker, int]]:
        broker = SQLiteBroker(str(tmp_path / "dlq.db"), max_deliveries=3)
        yield broker, 3
        broker.close()


class TestSQLiteResultStore(ResultStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteResultStore]:
        store = SQLiteResultStore(str(tmp_path / "cloudq.db"))
        yield store
        store.close()
