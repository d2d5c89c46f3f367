"""Celery's exception and time-limit semantics (docs: Tasks → Time limits, Handling errors)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cloudq import App, SoftTimeLimitExceeded, TaskFailed, TimeLimitExceeded, states
from cloudq.interfaces import ResultRecord
from cloudq.results import rebuild_exception

from .conftest import drain


class HTTPError(Exception):
    """A user's own exception class, defined in an imported module."""


def test_soft_time_limit_lets_the_task_clean_up_and_return(app: App) -> None:
    @app.task(soft_time_limit=0.2, time_limit=5)
    def mytask() -> str:
        try:
            for _ in range(100):
                time.sleep(0.05)
            return "finished"
        except SoftTimeLimitExceeded:
            return "cleaned up"

    result = mytask.delay()
    drain(app)
    assert result.get(timeout=1) == "cleaned up"
    assert result.state == states.SUCCESS


def test_an_uncaught_soft_time_limit_fails_the_task(app: App) -> None:
    @app.task(soft_time_limit=0.1)
    def stuck() -> None:
        for _ in range(100):
            time.sleep(0.05)

    result = stuck.delay()
    drain(app)
    with pytest.raises(SoftTimeLimitExceeded):
        result.get(timeout=1)


def test_time_limit_stays_the_hard_limit(app: App) -> None:
    @app.task(time_limit=0.1, soft_time_limit=5)
    def stuck() -> str:
        try:
            for _ in range(100):
                time.sleep(0.05)
        except SoftTimeLimitExceeded:
            return "never"
        return "never either"

    result = stuck.delay()
    drain(app)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=1)


def test_custom_exceptions_come_back_as_their_own_class(app: App) -> None:
    @app.task()
    def fetch(url: str) -> None:
        raise HTTPError(f"503 from {url}")

    result = fetch.delay("https://example.com")
    drain(app)
    with pytest.raises(HTTPError, match="503 from https://example.com") as info:
        result.get(timeout=1)
    assert isinstance(info.value.__cause__, TaskFailed)  # with the remote traceback
    assert "raise HTTPError" in (info.value.__cause__.remote_traceback or "")


def test_a_result_never_makes_the_caller_import_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    record = ResultRecord("t", states.FAILURE, error_type="json.tool.Boom", error_message="x")
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    exc = rebuild_exception(record)
    assert isinstance(exc, TaskFailed) and "json.tool" not in sys.modules
    exc = rebuild_exception(ResultRecord("t", states.FAILURE, error_type="os.system", error_message="x"))
    assert isinstance(exc, TaskFailed)  # not an exception class: never called


def test_exception_modules_setting_allows_importing_listed_modules(make_app: Any, tmp_path: Any) -> None:
    import sys

    (tmp_path / "shop_errors.py").write_text("class OutOfStock(Exception):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        app = make_app(exception_modules=["shop_errors"])
        record = ResultRecord("t", states.FAILURE, error_type="shop_errors.OutOfStock", error_message="sku 1")
        assert isinstance(rebuild_exception(record), TaskFailed)  # not loaded, not allowed
        exc = app.AsyncResult("t")._exception(record)
        assert type(exc).__name__ == "OutOfStock" and str(exc) == "sku 1"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shop_errors", None)


def test_soft_time_limit_reaches_an_async_task_at_its_await_and_keeps_its_recovery_value(app: App) -> None:
    import asyncio

    @app.task(soft_time_limit=0.05, time_limit=20)
    async def fetch() -> str:
        try:
            await asyncio.sleep(10)
            return "slept"
        except SoftTimeLimitExceeded:
            try:  # asyncio.timeout still counts right after the soft limit's cancellation
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(10)
            except TimeoutError:
                return "cleaned up"
            return "timeout missed"

    result = fetch.delay()
    drain(app)
    assert result.get(timeout=1) == "cleaned up" and result.state == states.SUCCESS


def test_an_uncaught_async_soft_time_limit_fails_the_task_and_time_limit_stays_hard(make_app: Any) -> None:
    import asyncio

    app = make_app(soft_time_limit=0.05)  # the app-wide soft limit reaches async tasks too

    @app.task()
    async def stuck() -> None:
        await asyncio.sleep(10)

    @app.task(time_limit=0.05, soft_time_limit=10)
    async def hard() -> str:
        try:
            await asyncio.sleep(10)
        except SoftTimeLimitExceeded:
            return "never"
        return "never either"

    soft, limit = stuck.delay(), hard.delay()
    drain(app)
    with pytest.raises(SoftTimeLimitExceeded, match="soft time limit of 0.05s"):
        soft.get(timeout=1)
    with pytest.raises(TimeLimitExceeded):
        limit.get(timeout=1)


def test_the_async_pool_raises_the_soft_limit_in_its_shared_event_loop(app: App) -> None:
    import asyncio

    from cloudq.testing.workers import run_burst

    @app.task(soft_time_limit=0.05)
    async def fetch(n: int) -> int:
        try:
            await asyncio.sleep(10)
        except SoftTimeLimitExceeded:
            return -n
        return n

    results = fetch.send_each(range(4))
    run_burst(app, pool="async", concurrency=4)
    assert [r.get(timeout=1) for r in results] == [0, -1, -2, -3]
