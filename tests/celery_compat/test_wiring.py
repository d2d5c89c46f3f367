"""Project wiring as Celery's docs write it: shared_task, include=, autodiscover_tasks, app.conf,
config_from_object, Celery setting names, and the dead letter of a task whose module was never
imported. Each case is a snippet of the Celery docs rewritten as an executable example."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import cloudq
from cloudq import App, ConfigurationError, shared_task
from cloudq.celery_names import SETTINGS
from cloudq.runtime.executor import Ack, DeadLetter

from .conftest import drain


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict[str, str]], None]:
    """Write a package of modules under tmp_path, importable for this test only."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, modules: dict[str, str]) -> None:
        root = tmp_path / name
        root.mkdir()
        (root / "__init__.py").write_text("")
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        written.append(name)

    yield write
    for name in written:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def test_shared_task_belongs_to_the_current_app_and_a_worker_finds_it(make_app: Callable[..., App]) -> None:
    # celery docs: "@shared_task lets you create tasks without having any concrete app instance"
    @shared_task
    def add(x: int, y: int) -> int:
        return x + y

    app = make_app()
    result = add.delay(2, 2)  # bound to the app created last
    assert result.app is app
    assert [type(o) for o in drain(app)] == [Ack]
    assert result.get(timeout=5) == 4
    assert add(1, 1) == 2  # calling it runs the function here


def test_set_default_makes_an_app_current_for_shared_tasks(make_app: Callable[..., App]) -> None:
    first = make_app()
    second = make_app()

    @shared_task(name="wiring.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    try:
        first.set_default()
        assert cloudq.current_app() is first
        result = mul.delay(3, 4)
        assert result.app is first and "wiring.mul" in second.tasks  # every app registers shared tasks
        drain(first)
        assert result.get(timeout=5) == 12
    finally:
        import cloudq.app as app_module

        app_module._default_app = None


def test_include_imports_the_task_modules_when_the_worker_needs_them(
    package: Callable[[str, dict[str, str]], None], make_app: Callable[..., App]
) -> None:
    # celery docs (next steps): app = Celery('proj', include=['proj.tasks'])
    package(
        "projinc",
        {"tasks": "from cloudq import shared_task\n@shared_task\ndef add(x: int, y: int) -> int:\n    return x + y\n"},
    )
    app = make_app(include=["projinc.tasks"])
    assert "projinc.tasks" not in sys.modules  # lazily, so proj/celery.py and proj/tasks.py can import each other
    assert "projinc.tasks.add" in app.tasks
    result = app.send_task("projinc.tasks.add", (2, 3))
    drain(app)
    assert result.get(timeout=5) == 5


def test_autodiscover_tasks_imports_each_packages_tasks_module(
    package: Callable[[str, dict[str, str]], None], make_app: Callable[..., App]
) -> None:
    # celery docs (django): app.autodiscover_tasks() finds <app>/tasks.py of every installed app
    package(
        "shop", {"tasks": "from cloudq import shared_task\n@shared_task\ndef order(n: int) -> int:\n    return n\n"}
    )
    package("blog", {"models": "X = 1\n"})  # no tasks module: skipped
    package("broken", {"tasks": "import no_such_module_here\n"})
    app = make_app()
    app.autodiscover_tasks(["shop", "blog"])
    assert "shop.tasks.order" in app.tasks and "blog.tasks" not in sys.modules
    app.autodiscover_tasks(lambda: ["shop"], related_name="tasks", force=True)
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):  # an error inside is not hidden
        app.autodiscover_tasks(["broken"], force=True)


def test_a_task_whose_module_was_not_imported_is_dead_lettered_saying_how_to_fix_it(sqlite_app: App) -> None:
    producer = sqlite_app  # the worker's app shares the producer's SQLite file

    @producer.task(name="proj.billing.charge")
    def charge(n: int) -> int:
        return n

    result = charge.delay(1)
    worker = App("proj", broker=producer.broker_url, results=producer.results_url)
    try:
        [outcome] = drain(worker)
    finally:
        worker.close()
    assert isinstance(outcome, DeadLetter)
    assert "module defining it (probably 'proj.billing') was not imported" in outcome.reason
    assert "include=['proj.billing']" in outcome.reason and "autodiscover_tasks" in outcome.reason
    with pytest.raises(cloudq.UnknownTask, match="was not imported"):
        result.get(timeout=5)


def test_app_conf_attribute_and_mapping_access_with_celery_names(make_app: Callable[..., App]) -> None:
    # celery docs: app.conf.task_routes = {...}; app.conf.update(task_default_queue=..., result_expires=...)
    app = make_app()

    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    app.conf.task_routes = {"*.add": {"queue": "math"}}
    app.conf.update(task_default_queue="work", result_expires=timedelta(hours=1), task_track_started=True)
    app.conf["task_time_limit"] = 30
    assert app.conf.task_default_queue == "work" == app.conf["default_queue"] == app.settings.default_queue
    assert app.conf.result_expires == 3600.0 and app.conf.routes == {"*.add": "math"}
    assert add.time_limit == 30 and add.track_started  # tasks registered before follow the settings
    assert "task_routes" in app.conf and "no_such" not in app.conf
    result = add.delay(1, 2)
    assert drain(app, "math") and result.get(timeout=5) == 3
    with pytest.raises(ConfigurationError, match="already in use .*a task was sent"):
        app.conf.task_default_queue = "late"
    with pytest.raises(ConfigurationError, match="already in use"):
        app.conf.update(result_expires=1)
    assert app.conf.task_default_queue == "work"


def test_conf_is_fixed_once_a_backend_is_opened(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.results.get("nothing")
    with pytest.raises(ConfigurationError, match="result store was opened"):
        app.conf.task_always_eager = True


def test_a_refused_setting_changes_nothing(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.conf.task_default_queue = "kept"
    with pytest.raises(ConfigurationError, match="pickle"):
        app.conf.update(task_default_queue="other", task_serializer="pickle")
    assert app.conf.task_default_queue == "kept"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("task_serializer", "pickle", "JSON, never pickle"),
        ("accept_content", ["pickle", "json"], "never pickle"),
        ("worker_prefetch_multiplier", 1, "use prefetch_multiplier"),
        ("task_queues", ["Queue('default', Exchange('default'))"], "no AMQP exchanges"),
        ("task_default_exchange", "tasks", "no AMQP exchanges"),
        ("worker_send_task_events", True, "sends no events"),
        ("timezone", "Europe/Paris", "UTC"),
    ],
)
def test_celery_settings_that_do_not_apply_fail_in_one_line(
    make_app: Callable[..., App], name: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        make_app(**{name: value})
    assert "\n" not in str(caught.value) and name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("task_serializer", "json"),
        ("accept_content", ["json"]),
        ("task_acks_late", True),
        ("enable_utc", True),
        ("timezone", "UTC"),
    ],
)
def test_celery_settings_cloudq_already_follows_are_accepted(
    make_app: Callable[..., App], name: str, value: Any
) -> None:
    make_app(**{name: value}).conf.update({name: value})


def test_config_from_object_module_string_and_celery_namespace(
    package: Callable[[str, dict[str, str]], None], make_app: Callable[..., App]
) -> None:
    # celery docs: app.config_from_object('celeryconfig'); django: ('django.conf:settings', namespace='CELERY')
    package(
        "cfgpkg",
        {
            "celeryconfig": """
                from datetime import timedelta
                task_default_queue = "from-module"
                result_expires = timedelta(minutes=5)
                task_always_eager = True
                _private = "ignored"
                """,
            "settings": """
                class Settings:
                    CELERY_TASK_DEFAULT_QUEUE = "django"
                    CELERY_TASK_SOFT_TIME_LIMIT = 20
                    DEBUG = True
                settings = Settings()
                """,
        },
    )
    app = make_app()
    app.config_from_object("cfgpkg.celeryconfig")
    assert (app.conf.task_default_queue, app.conf.result_expires, app.conf.task_always_eager) == (
        "from-module",
        300.0,
        True,
    )
    other = make_app()
    other.config_from_object("cfgpkg.settings:settings", namespace="CELERY")
    assert other.conf.task_default_queue == "django" and other.settings.soft_time_limit == 20

    @other.task()
    def slow() -> None: ...

    assert slow.soft_time_limit == 20  # the app-wide soft limit applies to every task
    third = make_app()
    third.config_from_object(SimpleNamespace(task_default_queue="ns"))
    third.config_from_object({"task_eager_propagates": True})
    assert third.conf.task_default_queue == "ns" and third.conf.task_eager_propagates
    with pytest.raises(ConfigurationError, match="unknown setting 'no_such_setting'"):
        third.config_from_object({"no_such_setting": 1})


def test_task_annotations_set_task_options_from_configuration(make_app: Callable[..., App]) -> None:
    # celery docs: task_annotations = {'tasks.add': {'time_limit': 10}}
    app = make_app(task_annotations={"*": {"max_retries": 7}, "proj.add": {"time_limit": 10}})

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.other", max_retries=1)
    def other() -> None: ...

    assert (add.time_limit, add.max_retries, other.max_retries) == (10, 7, 7)
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'rate_limt'.*task options"):
        app.conf.task_annotations = {"*": {"rate_limt": "1/s"}}


def test_every_celery_name_in_the_table_is_accepted_translated_or_refused(make_app: Callable[..., App]) -> None:
    app = make_app()
    for name, (target, _) in SETTINGS.items():
        if target is not None:
            assert target in type(app.settings).model_fields, name
