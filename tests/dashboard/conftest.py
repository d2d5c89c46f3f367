"""tests/dashboard: an app on SQLite whose tasks fail on demand, served by the dashboard in a
TestClient (test_http.py) or by a real ``cloudq dashboard`` process to a real browser
(test_browser.py); the moto server for the SQS+DynamoDB run, Google's emulators for the Pub/Sub +
Firestore one."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudq_aws.testing import fixtures as aws_fixtures
from cloudq_gcp.testing import fixtures as gcp_fixtures

APP_MODULE = textwrap.dedent(
    """
    from pathlib import Path

    from cloudq import App

    app = App(
        "dash",
        broker="{broker}",
        results="{results}",
        signing_key="k3y",
        result_extended=True,
        max_retries=0,
    )
    BROKEN = Path({marker!r})

    @app.task(name="notify")
    def notify(email: str, count: int = 1) -> int:
        if BROKEN.exists():
            raise ValueError(f"mail server refused {{email}}")
        return count

    @app.task(name="lookup")
    def lookup(key: str) -> str:
        raise KeyError(key)

    @app.task(name="slow")
    def slow(n: int) -> int:
        return n

    @app.task(name="total")
    def total(values: list[int]) -> int:
        return sum(values)
    """
)


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
    gcp_fixtures.register(config)


def write_app(folder: Path, broken: bool = True, broker: str | None = None, results: str | None = None) -> Path:
    """``dashapp.py`` in ``folder`` (importable as dashapp:app), on SQLite files in ``folder``
    unless ``broker``/``results`` URLs are given; returns the marker that breaks ``notify``."""
    marker = folder / "broken"
    if broken:
        marker.touch()
    (folder / "dashapp.py").write_text(
        APP_MODULE.format(
            broker=broker or f"sqlite:///{folder / 'q.db'}",
            results=results or f"sqlite:///{folder / 'r.db'}",
            marker=str(marker),
        )
    )
    return marker


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


@pytest.fixture
def app(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(app_dir))
    sys.modules.pop("dashapp", None)
    import dashapp  # type: ignore[import-not-found]

    yield dashapp.app
    dashapp.app.close()
    sys.modules.pop("dashapp", None)


@pytest.fixture
def gcp_app(
    pubsub_emulator: Any, firestore_emulator: Any, project: str, unique: str, tmp_path: Path, monkeypatch: Any
) -> Iterator[tuple[Any, Path]]:
    """This folder's app (``dashapp``) on Pub/Sub + Firestore, on this test's own topics and
    collection; with the folder it lives in."""
    write_app(
        tmp_path,
        broker=f"pubsub://{project}?prefix=t{unique}-&ack_deadline=10",
        results=f"firestore://results-{unique}?project={project}",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("dashapp", None)
    import dashapp

    yield dashapp.app, tmp_path
    dashapp.app.close()
    sys.modules.pop("dashapp", None)
