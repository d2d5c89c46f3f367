"""Apps for the Celery-compatibility cases: the embedded default (SQLite) and, where cheap, memory.

``drain(app)`` plays a worker: it runs every ready message through the executor and applies
each outcome to the broker, as the worker's acker would, until nothing is ready."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.runtime.executor import Ack, DeadLetter, Outcome, Requeue, RetryIn


@pytest.fixture(autouse=True)
def _shared_tasks_stay_in_their_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shared_task`` registers with every App made afterwards (as in Celery): a fresh registry per
    test keeps the cases' shared tasks out of other tests' apps."""
    import cloudq.app

    monkeypatch.setattr(cloudq.app, "_shared", [])


def _app(kind: str, tmp_path: Path, **config: Any) -> App:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'cloudq.db'}"
        return App("proj", broker=url, results=url, **config)
    return App("proj", broker="memory://", results="memory://", **config)


@pytest.fixture(params=["sqlite", "memory"])
def make_app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., App]]:
    monkeypatch.chdir(tmp_path)
    made: list[App] = []

    def make(**config: Any) -> App:
        made.append(_app(request.param, tmp_path, **config))
        return made[-1]

    yield make
    for app in made:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture
def sqlite_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.chdir(tmp_path)
    application = _app("sqlite", tmp_path)
    yield application
    application.close()


def drain(app: App, queue: str | None = None, limit: int = 50, wait_delays: bool = False) -> list[Outcome]:
    """Run ready messages of ``queue`` (the default) until none is ready; retries are made
    receivable at once when ``wait_delays`` (their delay is checked by the caller)."""
    queue = queue or app.settings.default_queue
    outcomes: list[Outcome] = []
    for _ in range(limit):
        deliveries = app.broker.receive(queue, 1, 30.0, wait_s=0)
        if not deliveries:
            break
        (delivery,) = deliveries
        outcome = app.executor.execute(delivery)
        outcomes.append(outcome)
        if isinstance(outcome, Ack):
            app.broker.ack([delivery])
        elif isinstance(outcome, RetryIn):
            app.broker.nack([delivery], 0.0 if wait_delays else outcome.delay_s)
        elif isinstance(outcome, Requeue):
            message = outcome.message
            if wait_delays:
                import dataclasses

                message = dataclasses.replace(message, delay_s=0.0)
            app.broker.send(queue, [message])
            app.broker.ack([delivery])
        elif isinstance(outcome, DeadLetter):
            app.broker.dead_letter([delivery], outcome.reason)
    return outcomes


def pytest_configure(config: pytest.Config) -> None:
    """The session's moto server and an SQS client on it (``sqs``, what the Lambda service uses) for
    the cases that also run on AWS (marked ``aws``), through the shared AWS fixtures plugin; without
    the AWS extras those cases are skipped."""
    try:
        from cloudq_aws.testing import fixtures
    except ImportError:
        return
    fixtures.register(config)
