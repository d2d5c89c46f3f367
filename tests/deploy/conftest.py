"""Fixtures for the deploy tests: the session's moto server (tests/aws/aws_fixtures.py) and
Google's emulators (tests/gcp/gcp_fixtures.py), plus a throwaway project folder per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for folder in ("aws", "gcp"):
    if str(_TESTS / folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / folder))

import aws_fixtures  # noqa: E402
import gcp_fixtures  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
    gcp_fixtures.register(config)
