"""tests/dashboard: an app on SQLite whose tasks fail on demand, served by the dashboard in a
TestClient (test_http.py) or by a real ``cloudq dashboard`` process to a real browser
(test_browser.py); the moto server for the SQS+DynamoDB run."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudq_aws.testing import fixtures as aws_fixtures

APP_MODULE = textwrap.dedent(
    """
    from pathlib import Path

    from cloudq import App

    app = App(
        "dash",
        broker="sqlite:///{db}",
        results="sqlite:///{results}",
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


def write_app(folder: Path, broken: bool = True) -> Path:
    """``dashapp.py`` in ``folder`` (importable as dashapp:app); returns the marker that breaks ``notify``."""
    marker = folder / "broken"
    if broken:
        marker.touch()
    (folder / "dashapp.py").write_text(
        APP_MODULE.format(db=folder / "q.db", results=folder / "r.db", marker=str(marker))
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
