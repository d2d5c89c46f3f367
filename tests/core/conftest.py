from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudq import App


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[App]:
    """An app on the in-memory backend, isolated from the developer's environment and files."""
    monkeypatch.chdir(tmp_path)
    application = App("test", broker="memory://", results="memory://", retry_backoff=0)
    yield application
    application.close()


@pytest.fixture
def eager_app(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[App]:
    monkeypatch.chdir(tmp_path)
    application = App("eager", eager=True, retry_backoff=0)
    yield application
    application.close()
