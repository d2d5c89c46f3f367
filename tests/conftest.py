"""Every test starts without the developer's CLOUDQ_* settings, so a shell's configuration can
neither make a test pass nor fail; tests that need a setting set it themselves."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_cloudq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLOUDQ_"):
            monkeypatch.delenv(name)
