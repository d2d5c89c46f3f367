"""Celery's calling semantics (docs: Calling Tasks → ETA and Countdown, Expiration; Tasks →
names; Testing → eager mode), as executable examples."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudq import App, AsyncResult, EagerResult, InvalidArguments, Signature, TaskRevokedError, states
from cloudq.envelope import decode
from cloudq.errors import InvalidOptions
from cloudq.runtime.executor import Ack

from .conftest import drain


def _envelope(app: App, queue: str = "default") -> Any:
    (delivery,) = app.broker.receive(queue, 1, 30.0)
    app.broker.nack([delivery], 0.0)
    return decode(delivery.body)


def test_expires_in_seconds_means_from_now(app: App) -> None:
    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    before = time.time()
    result = add.apply_async((10, 10), expires=60)  # "expires in one minute"
    env = _envelope(app)
    assert before + 60 <= env.expires <= time.time() + 60
    drain(app)
    assert result.get(timeout=1) == 20  # not expired: it runs


def test_expires_datetime_is_absolute_and_an_expired_task_is_revoked(app: App) -> None:
    ran: list[int] = []

    @app.task()
    def add(x: int, y: int) -> int:
        ran.append(1)
        return x + y

    result = add.apply_async((10, 10), expires=datetime.now(UTC) - timedelta(seconds=5))
    assert drain(app) == [Ack("expired")]
    assert ran == []
    assert result.state == states.REVOKED
    assert result.ready()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=1)


def test_naive_datetimes_are_utc(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # a host whose local time is not UTC
    time.tzset()

    @app.task()
    def noop() -> None:
        pass

    naive_eta = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    options = {"eta": naive_eta, "expires": naive_eta + timedelta(hours=1)}
    by_queue, _ = app._prepare([Signature(noop, (), {}, options)])  # what apply_async would send
    env = decode(by_queue["default"][0].body)
    expected = naive_eta.replace(tzinfo=UTC).timestamp()
    assert env.eta == pytest.approx(expected, abs=1)
    assert env.expires == pytest.approx(expected + 3600, abs=1)
    monkeypatch.undo()
    time.tzset()


def test_parameters_named_underscore_work_with_delay(app: App) -> None:
    @app.task()
    def ignore(*_args: int, **_: Any) -> str:
        return "ok"

    @app.task()
    def keep(x: int, _: int = 0, **_kw: Any) -> list[Any]:
        return [x, _, _kw]

    first = ignore.delay(1, 2, 3, flag=True)
    second = keep.delay(1, 5, extra="y")
    drain(app)
    assert first.get(timeout=1) == "ok"
    assert second.get(timeout=1) == [1, 5, {"extra": "y"}]


def test_non_string_header_values_are_refused_at_send(app: App) -> None:
    @app.task()
    def noop() -> None:
        pass

    with pytest.raises(InvalidOptions, match="header 'attempt' must be a string"):
        noop.apply_async(headers={"attempt": 1})
    assert app.broker.stats("default").ready == 0  # nothing sent


def test_async_result_equality_and_hash_by_id(app: App) -> None:
    one, same, other = AsyncResult("a" * 32, app=app), AsyncResult("a" * 32, app=app), AsyncResult("b" * 32, app=app)
    assert one == same and one != other and one == "a" * 32
    assert len({one, same, other}) == 2


def test_result_get_inside_a_task_raises_at_once(app: App) -> None:
    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    @app.task()
    def update_page_info(url: str) -> int:
        return add.delay(1, 2).get(timeout=30)  # Celery: "Never call result.get() within a task!"

    result = update_page_info.delay("https://example.com")
    started = time.monotonic()
    drain(app)
    assert time.monotonic() - started < 5  # failed at once, did not wait the 30 s
    with pytest.raises(RuntimeError, match="Never call result.get"):
        result.get(timeout=1)


def test_tasks_defined_in_main_get_the_apps_main_name(tmp_path: Path) -> None:
    script = tmp_path / "proj.py"
    script.write_text(
        textwrap.dedent(
            """
            from cloudq import App
            app = App("proj", broker="memory://", results="memory://")
            @app.task()
            def add(x: int, y: int) -> int:
                return x + y
            print(add.name)
            """
        )
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert run.stdout.strip() == "proj.add"  # the name a worker importing proj registers
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tasks.py").write_text(script.read_text())
    run = subprocess.run([sys.executable, "-m", "pkg.tasks"], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert run.stdout.strip() == "pkg.tasks.add"  # run with -m: its importable name


def test_eager_mode_runs_once_and_returns_an_eager_result(make_app: Any) -> None:
    app = make_app(eager=True)
    runs: list[int] = []

    @app.task()
    def fail() -> None:
        runs.append(1)
        raise ConnectionError("down")

    result = fail.delay()
    assert runs == [1]  # one run: no retries unless asked
    assert isinstance(result, EagerResult) and result.state == states.FAILURE
    with pytest.raises(ConnectionError):
        result.get()


def test_eager_propagates_raises_at_call_time(make_app: Any) -> None:
    app = make_app(eager=True, eager_propagates=True)

    class PaymentDeclined(Exception):
        pass

    @app.task()
    def charge() -> None:
        raise PaymentDeclined("card declined")

    with pytest.raises(PaymentDeclined, match="card declined"):
        charge.delay()


def test_apply_runs_here_and_returns_an_eager_result(app: App) -> None:
    @app.task(bind=True, max_retries=2)
    def add(self: Any, x: int, y: int) -> int:
        if self.request.retries < 1:
            raise self.retry(countdown=60)  # eager: the retry runs at once
        assert self.request.is_eager
        return x + y

    result = add.apply((2, 2))
    assert isinstance(result, EagerResult)
    assert result.get() == 4 and result.state == states.SUCCESS and result.successful()
    assert app.broker.stats("default").ready == 0  # nothing was sent
    assert app.results.get(result.id) is None  # nor stored
    with pytest.raises(InvalidArguments):
        add.apply(("x", 2))

    @app.task()
    def boom() -> None:
        raise KeyError("k")

    assert isinstance(boom.apply().result, KeyError)
    with pytest.raises(KeyError):
        boom.apply(throw=True)
