"""Task options and class-based tasks as Celery's task guide writes them: acks_late,
track_started, ignore_result per call, serializer, typing=False, throws, priority, base= with
on_success/on_failure/on_retry/after_return/before_start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from cloudq import App, ConfigurationError, Task, states
from cloudq.errors import InvalidOptions
from cloudq.runtime.executor import Ack

from .conftest import drain


def test_acks_late_and_reject_on_worker_lost_are_accepted_false_is_refused(app: App) -> None:
    @app.task(acks_late=True, reject_on_worker_lost=True)
    def charge() -> None: ...

    assert charge.acks_late is True
    with pytest.raises(ConfigurationError, match="acknowledges a message only after its outcome"):
        app.task(acks_late=False)(lambda: None)


def test_track_started_per_task(app: App) -> None:
    seen: list[str] = []

    @app.task(track_started=True, bind=True)
    def slow(self: Task[Any, Any]) -> None:
        seen.append(app.AsyncResult(self.request.id or "").state)

    @app.task(bind=True)
    def quiet(self: Task[Any, Any]) -> None:
        seen.append(app.AsyncResult(self.request.id or "").state)

    slow.delay()
    quiet.delay()
    drain(app)
    assert seen == [states.STARTED, states.PENDING]


def test_ignore_result_per_call(app: App) -> None:
    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    kept = add.apply_async((1, 2))
    ignored = add.apply_async((1, 2), ignore_result=True)
    drain(app)
    assert kept.get(timeout=5) == 3
    assert ignored.state == states.PENDING  # nothing was written

    @app.task(ignore_result=True)
    def quiet(x: int) -> int:
        return x

    wanted = quiet.apply_async((5,), ignore_result=False)
    drain(app)
    assert wanted.get(timeout=5) == 5


def test_serializer_json_only(app: App) -> None:
    @app.task(serializer="json")
    def add(x: int, y: int) -> int:
        return x + y

    add.apply_async((1, 2), serializer="json")
    with pytest.raises(ConfigurationError, match="JSON only"):
        add.apply_async((1, 2), serializer="pickle")
    with pytest.raises(ConfigurationError, match="never pickle"):
        app.task(serializer="pickle")(lambda: None)


def test_typing_false_sends_arguments_unchecked(app: App) -> None:
    # celery docs: @app.task(typing=False) skips the argument check at call time
    @app.task(typing=False)
    def add(x: int, y: int) -> Any:
        return [x, y]

    result = add.delay("not", "ints")
    drain(app)
    assert result.get(timeout=5) == ["not", "ints"]
    bad = add.delay(1)  # the worker calls it as sent: the task fails there, as in Celery
    drain(app)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        bad.get(timeout=5)


def test_throws_logs_expected_errors_without_traceback(app: App, caplog: pytest.LogCaptureFixture) -> None:
    class NotFound(Exception):
        pass

    @app.task(throws=(NotFound,))
    def lookup(key: str) -> None:
        raise NotFound(key)

    @app.task()
    def crash() -> None:
        raise RuntimeError("boom")

    lookup.delay("k")
    crash.delay()
    with caplog.at_level(logging.INFO, logger="cloudq.task"):
        drain(app)
    expected = [r for r in caplog.records if "raised expected" in r.getMessage()]
    unexpected = [r for r in caplog.records if "raised unexpected" in r.getMessage()]
    assert len(expected) == 1 and expected[0].levelno == logging.INFO
    assert "Traceback" not in expected[0].getMessage() and expected[0].exc_info is None
    assert len(unexpected) == 1 and unexpected[0].levelno == logging.ERROR
    assert "Traceback" in unexpected[0].getMessage()


def test_priority_is_accepted_and_checked(app: App) -> None:
    @app.task(priority=5)
    def add(x: int, y: int) -> int:
        return x + y

    result = add.apply_async((1, 2), priority=9)
    drain(app)
    assert add.priority == 5 and result.get(timeout=5) == 3
    with pytest.raises(InvalidOptions, match="priority must be an int from 0 to 255"):
        add.apply_async((1, 2), priority="high")


class Recording(Task[Any, Any]):
    """Celery's class-based handlers (docs: "Handlers"), recording what they were called with."""

    calls: list[tuple[Any, ...]] = []

    def before_start(self, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.calls.append(("before_start", task_id, args, kwargs, self.request.id))

    def on_success(self, retval: Any, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.calls.append(("on_success", retval, task_id))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("on_failure", type(exc).__name__, "Traceback" in str(einfo)))

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("on_retry", type(exc).__name__))

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("after_return", status))


def test_base_class_handlers_run_in_the_worker(app: App) -> None:
    Recording.calls = []

    @app.task(base=Recording)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(base=Recording, autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0)
    def missing() -> None:
        raise KeyError("k")

    assert isinstance(add, Recording)
    ok = add.delay(2, 3)
    drain(app)
    assert Recording.calls == [
        ("before_start", ok.id, [2, 3], {}, ok.id),
        ("on_success", 5, ok.id),
        ("after_return", states.SUCCESS),
    ]
    Recording.calls = []
    missing.delay()
    drain(app, wait_delays=True)
    assert [c[0] for c in Recording.calls] == [
        "before_start",
        "on_retry",
        "after_return",
        "before_start",
        "on_failure",
        "after_return",
    ]
    assert Recording.calls[4] == ("on_failure", "KeyError", True)
    assert Recording.calls[2] == ("after_return", states.RETRY)


def test_a_failing_handler_is_logged_and_never_loses_the_task(app: App, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Task[Any, Any]):
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            raise RuntimeError("handler bug")

        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            raise ValueError("also broken")

    @app.task(base=Broken)
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 1)
    with caplog.at_level(logging.ERROR, logger="cloudq.task"):
        outcomes = drain(app)
    assert [type(o) for o in outcomes] == [Ack] and result.get(timeout=5) == 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "on_success raised RuntimeError: handler bug" in logged and "before_start raised ValueError" in logged


def test_base_must_be_a_task_class(app: App) -> None:
    with pytest.raises(ConfigurationError, match="subclass of cloudq.Task"):
        app.task(base=object)(lambda: None)


def test_unknown_task_options_name_the_known_ones(make_app: Callable[..., App]) -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="rate_limt.*task options: .*acks_late"):
        app.task(rate_limt="1/s")(lambda: None)


class Multiply(Task[Any, Any]):
    """A class-based task as Celery 4+ writes them: name, options as attributes, run(), handlers."""

    name = "math.multiply"
    autoretry_for = (KeyError,)
    max_retries = 1
    default_retry_delay = 0
    seen: list[tuple[Any, ...]] = []

    def run(self, x: int, y: int = 2) -> int:
        self.seen.append(("run", self.request.id, self.request.retries))
        if x < 0:
            raise KeyError("negative")
        return x * y

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self.seen.append(("on_success", retval, task_id))

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.seen.append(("on_retry", type(exc).__name__))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.seen.append(("on_failure", type(exc).__name__))


def test_class_based_tasks_register_celery_4_style(app: App) -> None:
    from cloudq import InvalidArguments

    Multiply.seen = []
    multiply = app.register_task(Multiply())
    assert app.tasks["math.multiply"] is multiply and app.register_task(multiply) is multiply
    assert (multiply.max_retries, multiply.autoretry_for) == (1, (KeyError,))
    assert multiply(3) == 6  # called directly: run() here, request.called_directly
    assert Multiply.seen == [("run", None, 0)]
    with pytest.raises(InvalidArguments, match="math.multiply"):  # validated from run's signature
        multiply.delay("three")
    with pytest.raises(InvalidArguments):
        multiply.delay(1, 2, 3)
    Multiply.seen = []
    ok = multiply.delay(4, y=5)
    drain(app)
    assert ok.get(timeout=1) == 20
    assert Multiply.seen == [("run", ok.id, 0), ("on_success", 20, ok.id)]
    Multiply.seen = []
    bad = multiply.delay(-1)
    drain(app, wait_delays=True)  # the class's autoretry_for/max_retries apply
    assert [s[0] for s in Multiply.seen] == ["run", "on_retry", "run", "on_failure"] and bad.failed()


def test_register_task_names_refusals_and_async_run(app: App) -> None:
    class Unnamed(Task[Any, Any]):
        async def run(self, text: str) -> str:
            return text.upper()

    class NoRun(Task[Any, Any]):
        pass

    class Clash(Task[Any, Any]):
        name = "math.multiply"

        def run(self) -> None: ...

    unnamed = app.register_task(Unnamed)  # the class itself is accepted, as in Celery
    assert unnamed.name == f"{__name__}.test_register_task_names_refusals_and_async_run.<locals>.Unnamed"
    result = unnamed.delay("hi")
    drain(app)
    assert result.get(timeout=1) == "HI"
    with pytest.raises(ConfigurationError, match="NoRun defines no run"):
        app.register_task(NoRun())
    app.register_task(Multiply())
    with pytest.raises(ConfigurationError, match="'math.multiply' is already registered by another task"):
        app.register_task(Clash())
    with pytest.raises(ConfigurationError, match="takes a cloudq.Task subclass instance"):
        app.register_task(object())  # type: ignore[arg-type]


def test_base_class_attributes_are_option_defaults_and_its_call_wraps_the_body(app: App) -> None:
    wrapped: list[str] = []

    class Retrying(Task[Any, Any]):
        autoretry_for = (KeyError,)
        max_retries = 1
        default_retry_delay = 0

        def __call__(self, *args: Any, **kwargs: Any) -> Any:  # Celery's DatabaseTask pattern
            wrapped.append(self.name)
            return super().__call__(*args, **kwargs)

    runs: list[str] = []

    @app.task(base=Retrying, name="retried")
    def retried() -> None:
        runs.append("retried")
        raise KeyError("k")

    @app.task(base=Retrying, name="once", max_retries=0)  # the decorator's options win
    def once() -> None:
        runs.append("once")
        raise KeyError("k")

    retried.delay()
    once.delay()
    drain(app, wait_delays=True)
    assert sorted(runs) == ["once", "retried", "retried"]
    assert sorted(wrapped) == ["once", "retried", "retried"]  # the worker called the class's __call__
