"""``cloudq worker --burst`` on the in-process and embedded SQLite backends (the burst contract)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from cloudq.testing import BurstContract


class TestMemoryBurst(BurstContract):
    in_process: ClassVar[bool] = True  # memory:// cannot be shared with a worker subprocess

    @pytest.fixture
    def burst_env(self) -> dict[str, str]:
        return {"CLOUDQ_BROKER": "memory://", "CLOUDQ_RESULTS": "memory://"}

    @pytest.fixture
    def unreachable_env(self) -> tuple[dict[str, str], str]:
        pytest.skip("memory:// lives in the worker's own process: it cannot be unreachable")


class TestSQLiteBurst(BurstContract):
    @pytest.fixture
    def burst_env(self, tmp_path: Path) -> dict[str, str]:
        url = f"sqlite:///{tmp_path / 'cloudq.db'}"
        return {"CLOUDQ_BROKER": url, "CLOUDQ_RESULTS": url}

    @pytest.fixture
    def unreachable_env(self, tmp_path: Path) -> tuple[dict[str, str], str]:
        missing = tmp_path / "no-such-folder" / "cloudq.db"
        return {"CLOUDQ_BROKER": f"sqlite:///{missing}", "CLOUDQ_RESULTS": "memory://"}, str(missing.parent)
