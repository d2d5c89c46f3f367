"""Canvas tests run on the memory and SQLite backends with a real (burst) worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from canvas_tasks import register

from cloudq import App


@pytest.fixture(params=["memory", "sqlite"])
def make_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., App]]:
    """``make_app(**config)``: an App with the canvas tasks registered, on this test's backend."""
    apps: list[App] = []

    def make(**config: Any) -> App:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'canvas.db'}"
        app = App("canvas", **{"broker": url, "results": url, "retry_backoff": 0, **config})
        register(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


def pytest_configure(config: pytest.Config) -> None:
    """The moto server fixtures (cloudq_aws.testing) for the cloud runs of the same chains."""
    try:
        from cloudq_aws.testing import fixtures
    except ImportError:  # the AWS extra is not installed: those tests skip
        return
    fixtures.register(config)
