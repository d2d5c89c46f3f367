"""The redrive contract on the memory and SQLite brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudq.backends.memory import MemoryBroker
from cloudq.backends.sqlite import SQLiteBroker
from cloudq.testing import RedriveContract


class TestMemoryRedrive(RedriveContract):
    timeout_s = 2.0

    @pytest.fixture
    def broker(self) -> MemoryBroker:
        return MemoryBroker()


class TestSQLiteRedrive(RedriveContract):
    timeout_s = 2.0

    @pytest.fixture
    def broker(self, tmp_path: Path) -> Iterator[SQLiteBroker]:
        broker = SQLiteBroker(str(tmp_path / "cloudq.db"))
        yield broker
        broker.close()
