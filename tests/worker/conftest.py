from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cloudq import App

HERE = Path(__file__).parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private working directory (tests/conftest.py clears CLOUDQ_* for every test)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def make_app(clean_env: Path) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(**config: Any) -> App:
        config = {"broker": "memory://", "results": "memory://", "retry_backoff": 0, **config}
        app = App("worker-test", **config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def sqlite_available() -> bool:
    try:
        importlib.import_module("cloudq.backends.sqlite")
    except ImportError:
        return False
    return True


needs_sqlite = pytest.mark.skipif(not sqlite_available(), reason="cloudq.backends.sqlite is not available yet")


@pytest.fixture
def tasks_app(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """tests/worker/tasks_app.py bound to a fresh SQLite file, importable by child processes."""
    if not sqlite_available():
        pytest.skip("cloudq.backends.sqlite is not available yet")
    url = f"sqlite:///{clean_env / 'cloudq.db'}"
    monkeypatch.setenv("CLOUDQ_BROKER", url)
    monkeypatch.setenv("CLOUDQ_RESULTS", url)
    monkeypatch.syspath_prepend(str(HERE))
    import tasks_app

    module = importlib.reload(tasks_app)  # a new App that reads this test's environment
    yield module
    module.app.close()
