"""App: settings, the task registry, routing, and lazily-built broker and result store."""

from __future__ import annotations

import builtins
import inspect
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .canvas.signature import SEND_OPTIONS, Signature, options_to_json
from .errors import ConfigurationError, InvalidOptions
from .interfaces import OutgoingMessage
from .results import AsyncResult, EagerResult
from .routing import Router
from .signals import after_task_publish, before_task_publish
from .task import Request, Task, check_headers, current_request
from .util.rates import parse_rate

if TYPE_CHECKING:
    from .config import Settings
    from .control import Control
    from .interfaces import Broker, ResultStore
    from .periodic import PeriodicTable, PeriodicTask
    from .results import AsyncResult as ResultHandle
    from .runtime.executor import Executor

F = TypeVar("F", bound=Callable[..., Any])


class _Unset:
    """Marks an option that was not given (``max_retries=None`` means forever)."""


_UNSET = _Unset()


def _exception_types(value: Any) -> tuple[type[BaseException], ...]:
    """Exception classes from a class, a sequence of them, or names: a builtin (``"OSError"``) or
    ``"module.Class"`` / ``"module:Class"`` (imported: this is the app's own configuration)."""
    from importlib import import_module

    items = [value] if isinstance(value, (type, str)) else list(value)
    found: list[type[BaseException]] = []
    for item in items:
        cls: Any = item
        if isinstance(item, str):
            module, sep, attr = item.replace(":", ".").rpartition(".")
            try:
                cls = getattr(import_module(module) if sep else builtins, attr)
            except (ImportError, AttributeError, ValueError):
                raise ConfigurationError(f"retry_on: cannot find the exception class {item!r}") from None
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ConfigurationError(f"retry_on takes exception classes, got {item!r}")
        found.append(cls)
    return tuple(found)


def _task_name(app: App, fn: Callable[..., Any]) -> str:
    """``module.qualname``, as Celery names tasks. A task defined in the script being run
    (``__main__``) is named after the module the worker will import: the script's importable
    name when it was started with ``python -m``, else the app's name (Celery's ``app.main``)."""
    module = getattr(fn, "__module__", None) or "__main__"
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        spec_name = getattr(spec, "name", None)
        module = spec_name if spec_name and spec_name != "__main__" else app.name
    return f"{module}.{fn.__qualname__}"


_last_app: weakref.ref[App] | None = None
_default_app: App | None = None
# shared_task registrations: every App picks up the ones it has not seen (Celery's shared tasks)
_shared: list[tuple[Callable[..., Any], dict[str, Any]]] = []


def current_app() -> App:
    """Celery's current app: the one set with ``app.set_default()``, else the most recently
    created App (the fallback for ``AsyncResult(id)`` without ``app=`` and for ``shared_task``)."""
    app = _default_app or (_last_app() if _last_app else None)
    if app is None:
        raise ConfigurationError("no cloudq App exists yet: create one (App('proj')) before using a shared_task")
    return app


class SharedTask:
    """What ``shared_task`` returns: the task of the current app (``current_app()``), registered
    there on first use; every App also registers every shared task it has not seen when its
    tasks are looked up, so a worker finds them by name."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "task")

    def _task(self) -> Task[Any, Any]:
        return current_app()._shared_task(self._fn, self._options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._task(), name)

    def __repr__(self) -> str:
        return f"<SharedTask {getattr(self._fn, '__qualname__', self._fn)!r}>"


@overload
def shared_task(fn: Callable[..., Any], /) -> Any: ...


@overload
def shared_task(fn: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], Any]: ...


def shared_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Celery's ``@shared_task``: a task for reusable modules that import no App; it belongs to
    whichever App is current when it is used (``.delay()`` sends through that app)."""

    def make(f: Callable[..., Any]) -> SharedTask:
        _shared.append((f, options))
        return SharedTask(f, options)

    return make if fn is None else make(fn)


def _import_related(package: str, related_name: str | None) -> None:
    """Import ``package.related_name``; a package without that module is skipped (Celery's
    autodiscovery), an error inside the module is raised."""
    from importlib import import_module

    name = f"{package}.{related_name}" if related_name else package
    try:
        import_module(name)
    except ModuleNotFoundError as exc:
        if not related_name or exc.name not in (name, package):
            raise
        if exc.name == package:
            raise ConfigurationError(f"autodiscover_tasks: cannot import package {package!r}") from None


def new_task_id() -> str:
    """A random 128-bit id as 32 hex digits (uuid4's randomness without its formatting cost)."""
    return os.urandom(16).hex()


def to_epoch(value: datetime | timedelta | float | None, now: float | None = None) -> float | None:
    """Epoch seconds of an ``eta``: a datetime (naive ones are UTC, as Celery's worker reads them),
    a timedelta from now, or a number already in epoch seconds."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, timedelta):
        return (time.time() if now is None else now) + value.total_seconds()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _expires_epoch(value: datetime | timedelta | float | None, now: float) -> float | None:
    """Celery's ``expires``: a number is seconds from now, a datetime is absolute (naive = UTC)."""
    if value is None or isinstance(value, bool):
        return value  # a bool is no time: check_epoch refuses it
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidOptions(f"expires must be a finite number of seconds from now, got {value!r}")
        return now + value
    return to_epoch(value, now)


def _send_times(options: dict[str, Any], now: float) -> tuple[float | None, float | None]:
    """The envelope's eta and expires from ``eta``/``countdown``/``expires``; InvalidOptions for
    values no worker could read (NaN, infinities, beyond year 9999)."""
    eta_opt, countdown, expires_opt = options.get("eta"), options.get("countdown"), options.get("expires")
    if eta_opt is None and countdown is None and expires_opt is None:
        return None, None  # the common call: no times, nothing to check
    from .envelope import check_epoch

    eta = to_epoch(eta_opt, now)
    expires = _expires_epoch(expires_opt, now)
    eta_name = "eta"
    if countdown is not None:
        if type(countdown) not in (int, float) or not math.isfinite(countdown):
            raise InvalidOptions(f"countdown must be a finite number of seconds, got {countdown!r}")
        if countdown:
            eta, eta_name = max(eta or 0.0, now + countdown), "eta (now + countdown)"
    return (
        None if eta is None else check_epoch(eta_name, eta),
        None if expires is None else check_epoch("expires", expires),
    )


class App:
    """A cloudq application: ``App("name", broker="sqs://", results="dynamodb://table")``."""

    def __init__(
        self,
        name: str,
        broker: str | None = None,
        results: str | None = None,
        *,
        include: Sequence[str] = (),
        **config: Any,
    ) -> None:
        """``include``: modules imported when the app's tasks are first looked up (a worker
        receiving one, ``app.tasks``), as Celery's ``include=``. ``config``: settings by their
        cloudq or Celery names (docs/coming-from-celery.md)."""
        from .envelope import build

        global _last_app
        self.name = name
        self._overrides: dict[str, Any] = {}
        self._set_config({"broker": broker, "results": results, **config})
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._imports: list[tuple[str, str | None]] = [(module, None) for module in include]
        self._imported = 0
        self._shared_seen = 0
        self._used: str | None = None  # what first used the app: settings are fixed from then on
        self._broker: Broker | None = None
        self._results: ResultStore | None = None
        self._executor: Executor | None = None
        self._lock = threading.RLock()
        self._build_message = build
        self._periodic_table: PeriodicTable | None = None  # built by the first periodic declaration
        self._configure()
        _last_app = weakref.ref(self)

    def _set_config(self, values: dict[str, Any]) -> None:
        """Record settings (Celery names translated) without applying them."""
        from .celery_names import translate

        for key, value in values.items():
            if value is None and key in ("broker", "results"):
                continue
            named = translate(key, value)
            if named is not None:
                self._overrides[named[0]] = named[1]

    def _configure(self) -> None:
        """(Re)build the settings and everything derived from them, tasks' options included."""
        from .config import load_settings

        self.settings: Settings = load_settings(dict(self._overrides))
        self.router = Router(self.settings.routes, self.settings.default_queue)
        key = self.settings.signing_key
        self.signing_key: bytes | None = key.get_secret_value().encode() if key else None
        retry_on = list(self.settings.retry_on) + list(self.settings.autoretry_for)
        self._retry_on = _exception_types(retry_on)
        self._check_backends()
        if self.settings.beat_schedule:  # cloudq.periodic (and schedules, zoneinfo) load only for these
            from .periodic import from_setting

            for name, value in self.settings.beat_schedule.items():
                from_setting(name, value)  # a bad entry fails here, naming it
        for task in getattr(self, "_tasks", {}).values():
            task.configure(**self._task_attrs(task.fn, task.name, task.options))

    def _mark_used(self, what: str) -> None:
        if self._used is None:
            self._used = what
            from .observability import tracing

            tracing.install(self)  # settings are fixed now: connect the publish span if tracing is on

    def update_config(self, values: dict[str, Any]) -> None:
        """Change settings (cloudq or Celery names) before the app is first used."""
        if self._used is not None:
            raise ConfigurationError(
                f"app {self.name!r} is already in use ({self._used}): its settings are fixed; "
                f"set {', '.join(sorted(values)) or 'them'} before the first send or backend use "
                "(App(...) kwargs, app.conf, app.config_from_object)"
            )
        previous = dict(self._overrides)
        try:
            self._set_config(values)
            self._configure()
        except Exception:
            self._overrides = previous
            self._configure()
            raise

    @property
    def conf(self) -> Conf:
        """Celery's ``app.conf``: settings by attribute or key, cloudq or Celery names
        (``app.conf.task_routes = {...}``, ``app.conf.update(...)``), until first use."""
        return Conf(self)

    def config_from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Celery's ``config_from_object``: settings from a module, ``"module"``/``"module:attr"``,
        an object or a mapping. With ``namespace="CELERY"`` only ``CELERY_``-prefixed names are
        read (``CELERY_BROKER_URL`` -> ``broker_url``); without, every public lowercase name."""
        from importlib import import_module

        if isinstance(obj, str):
            module_name, _, attr = obj.partition(":")
            try:
                obj = import_module(module_name)
            except ImportError as exc:
                raise ConfigurationError(f"config_from_object: cannot import {module_name!r}: {exc}") from None
            if attr:
                obj = getattr(obj, attr)
        items = obj.items() if isinstance(obj, dict) else ((k, getattr(obj, k)) for k in dir(obj))
        prefix = f"{namespace}_" if namespace else ""
        found: dict[str, Any] = {}
        for key, value in items:
            if prefix:
                if not key.startswith(prefix):
                    continue
                key = key[len(prefix) :].lower()
            elif key.startswith("_") or not key.islower():
                continue
            if inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value):
                continue
            found[key] = value
        self.update_config(found)

    def set_default(self) -> None:
        """Make this the current app (for ``shared_task`` and ``AsyncResult(id)``), as in Celery."""
        global _default_app
        _default_app = self

    def autodiscover_tasks(
        self,
        packages: Sequence[str] | Callable[[], Sequence[str]],
        related_name: str | None = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` of every package when the app's tasks are first looked
        up (now with ``force=True``); packages without that module are skipped (Django: pass the
        installed apps)."""
        names = packages() if callable(packages) else packages
        with self._lock:
            self._imports.extend((package, related_name) for package in names)
        if force:
            self._import_pending()

    def _import_pending(self) -> None:
        with self._lock:
            while self._imported < len(self._imports):
                module, related = self._imports[self._imported]
                self._imported += 1
                if related is None:
                    from importlib import import_module

                    try:
                        import_module(module)
                    except ModuleNotFoundError as exc:
                        raise ConfigurationError(f"App(include=...): cannot import {module!r}: {exc}") from None
                else:
                    _import_related(module, related)

    @property
    def tasks(self) -> dict[str, Task[Any, Any]]:
        """The registered tasks by name; imports ``include``/``autodiscover_tasks`` modules and
        registers shared tasks first."""
        if self._imported < len(self._imports):
            self._import_pending()
        if self._shared_seen < len(_shared):
            with self._lock:
                while self._shared_seen < len(_shared):
                    fn, options = _shared[self._shared_seen]
                    self._shared_seen += 1
                    self._shared_task(fn, options)
        return self._tasks

    def _shared_task(self, fn: Callable[..., Any], options: dict[str, Any]) -> Task[Any, Any]:
        name = options.get("name") or _task_name(self, fn)
        task = self._tasks.get(name)
        if task is not None and task.fn is fn:
            return task
        if task is not None and task.shared:  # the module was imported again: its newest definition wins
            del self._tasks[name]
        task = self._register(fn, **options)
        task.shared = True
        return task

    def __repr__(self) -> str:
        return f"<App {self.name} broker={self.broker_url} results={self.results_url}>"

    # -- backends ---------------------------------------------------------------------------

    def _check_backends(self) -> None:
        """A wrong or uninstalled scheme fails here, at App(...), not at the first send or event
        (the backends themselves are still built on first use)."""
        from .registry import check_url

        check_url("broker", self.broker_url)
        check_url("result", self.results_url)

    @property
    def broker_url(self) -> str:
        from .config import default_url

        if self.settings.eager:
            return "memory://"
        return self.settings.broker or default_url("broker")

    @property
    def results_url(self) -> str:
        from .config import default_url

        if self.settings.results:
            return self.settings.results
        if self.settings.eager:
            return "memory://"
        # results default to the broker's embedded store when the broker is embedded
        broker = self.broker_url
        return broker if broker.startswith(("sqlite:", "memory:")) else default_url("results")

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            with self._lock:
                if self._broker is None:
                    from .registry import open_broker

                    self._mark_used("its broker was opened")
                    self._broker = open_broker(self.broker_url, self.settings)
        return self._broker

    @property
    def results(self) -> ResultStore:
        if self._results is None:
            with self._lock:
                if self._results is None:
                    from .registry import open_results

                    self._mark_used("its result store was opened")
                    self._results = open_results(self.results_url, self.settings)
        return self._results

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            from .runtime.executor import Executor

            self._executor = Executor(self)
        return self._executor

    @property
    def control(self) -> Control:
        """Celery's ``app.control``: ``revoke`` through the result store (cloudq/control.py)."""
        from .control import Control

        return Control(self)

    def close(self) -> None:
        for backend in (self._broker, self._results):
            if backend is not None:
                backend.close()
        self._broker = self._results = None

    # -- tasks ------------------------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> Task[Any, Any]: ...

    @overload
    def task(self, fn: None = None, /, **options: Any) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register a task: ``@app.task()`` or ``@app.task(name=..., queue=..., max_retries=...)``."""
        if fn is not None:
            return self._register(fn, **options)
        return lambda f: self._register(f, **options)

    def _register(
        self, fn: Callable[..., Any], *, base: type[Task[Any, Any]] | None = None, **options: Any
    ) -> Task[Any, Any]:
        """Register ``fn`` as a task of class ``base`` (a Task subclass: Celery's ``base=``, for
        ``on_success``/``on_failure``/``on_retry``/``after_return``/``before_start`` hooks; its
        class attributes are option defaults, the decorator's options win)."""
        task_name = options.get("name") or _task_name(self, fn)
        if task_name in self._tasks and self._tasks[task_name].fn is not fn:
            raise ConfigurationError(f"task name {task_name!r} is already registered by another function")
        cls = base or Task
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ConfigurationError(f"task {task_name}: base= takes a subclass of cloudq.Task, got {base!r}")
        return self._bind(cls(), fn, task_name, {**self._class_options(cls), **options})

    def register_task(self, task: Task[Any, Any] | type[Task[Any, Any]]) -> Task[Any, Any]:
        """Celery 4+'s class-based tasks: ``app.register_task(MyTask())`` (or the class). The
        class gives ``run(self, ...)`` (its signature validates the arguments), ``name`` (default
        ``module.ClassName``), options as class attributes and the handlers as methods."""
        if isinstance(task, type):
            task = task()
        cls = type(task)
        if not isinstance(task, Task):
            raise ConfigurationError(f"register_task takes a cloudq.Task subclass instance, got {task!r}")
        if cls.run is Task.run:
            raise ConfigurationError(f"register_task: {cls.__qualname__} defines no run(self, ...) method")
        explicit = getattr(cls, "name", None)  # a class attribute (Task itself has none)
        task_name = explicit if isinstance(explicit, str) and explicit else _task_name(self, cls)
        known = self._tasks.get(task_name)
        if known is task:
            return task
        if known is not None:
            raise ConfigurationError(f"task name {task_name!r} is already registered by another task")
        return self._bind(task, task.run, task_name, self._class_options(cls))

    def _bind(
        self, task: Task[Any, Any], fn: Callable[..., Any], task_name: str, options: dict[str, Any]
    ) -> Task[Any, Any]:
        task.bind_to(self, fn, task_name, self._task_attrs(fn, task_name, options))
        task.options = dict(options)
        self._tasks[task_name] = task
        return task

    def _class_options(self, cls: type[Task[Any, Any]]) -> dict[str, Any]:
        """Task options a Task subclass sets as class attributes (``max_retries = 5``...), as Celery
        reads them; ``name`` and ``bind`` are not options of a class."""
        names = set(inspect.signature(self._task_options).parameters) - {"fn", "task_name", "bind"}
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):  # subclasses override their bases
            if isinstance(klass, type) and issubclass(klass, Task) and klass is not Task:
                found.update((k, v) for k, v in vars(klass).items() if k in names)
        return found

    def _task_attrs(self, fn: Callable[..., Any], task_name: str, options: dict[str, Any]) -> dict[str, Any]:
        """The task's attributes from its options, the app's ``annotations`` (which win, as
        Celery's ``task_annotations``) and settings; ConfigurationError for an unknown option."""
        notes = self.settings.annotations
        merged = {**options, **notes.get("*", {}), **notes.get(task_name, {})}
        merged.pop("name", None)
        try:
            return self._task_options(fn, task_name, **merged)
        except TypeError as exc:
            if "unexpected keyword" not in str(exc):
                raise
            known = sorted(set(inspect.signature(self._task_options).parameters) - {"fn", "task_name", "name"})
            raise ConfigurationError(f"task {task_name}: {exc}; task options: {', '.join(known)}") from None

    def _task_options(
        self,
        fn: Callable[..., Any],
        task_name: str,
        *,
        queue: str | None = None,
        max_retries: int | _Unset | None = _UNSET,
        retry_backoff: float | bool | None = None,
        retry_backoff_max: float | None = None,
        retry_jitter: bool | None = None,
        retry_on: Sequence[type[BaseException]] | type[BaseException] | None = None,
        autoretry_for: Sequence[type[BaseException]] | type[BaseException] | None = None,
        dont_autoretry_for: Sequence[type[BaseException]] | type[BaseException] | None = None,
        retry_kwargs: dict[str, Any] | None = None,
        default_retry_delay: float | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        idempotent: bool = False,
        ignore_result: bool = False,
        bind: bool = False,
        acks_late: bool = True,
        reject_on_worker_lost: bool = True,
        track_started: bool | None = None,
        serializer: str = "json",
        typing: bool = True,
        throws: Sequence[type[BaseException]] | type[BaseException] = (),
        priority: int | None = None,
        rate_limit: str | float | None = None,
    ) -> dict[str, Any]:
        """Celery's retry options: ``autoretry_for`` (= ``retry_on``; default: the app's
        ``retry_on`` setting, empty unless set), ``dont_autoretry_for``, ``retry_kwargs``
        (``max_retries``, ``countdown``), ``default_retry_delay``, ``retry_backoff``,
        ``retry_backoff_max``, ``retry_jitter``; ``max_retries=None`` retries forever.
        ``acks_late``/``reject_on_worker_lost`` are accepted (cloudq always acks after the
        outcome and runs a lost worker's delivery again); ``serializer`` is "json" only;
        ``typing=False`` skips argument validation; ``throws``: expected exceptions, logged
        without a traceback; ``priority`` is accepted and ignored (no cloudq broker orders by it);
        ``rate_limit`` ("10/s", "100/m", "1000/h", a number per second; default: the
        ``default_rate_limit`` setting) is per worker, as in Celery (runtime/ratelimit.py)."""
        from .retry import RetryPolicy

        s = self.settings
        extra = dict(retry_kwargs or {})
        unknown = sorted(set(extra) - {"max_retries", "countdown"})
        if unknown:
            raise ConfigurationError(
                f"task {task_name}: retry_kwargs takes max_retries and countdown, not {', '.join(unknown)}"
            )
        if not isinstance(max_retries, _Unset):
            retries: int | None = max_retries
        else:
            retries = extra.get("max_retries", s.max_retries)
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise ConfigurationError(f"task {task_name}: max_retries must be >= 0 or None (forever), got {retries}")
        if soft_time_limit is None:
            soft_time_limit = s.soft_time_limit  # the app-wide soft limit (async tasks: at their next await)
        for label, limit in (("time_limit", time_limit), ("soft_time_limit", soft_time_limit)):
            if limit is not None and limit <= 0:
                raise ConfigurationError(f"task {task_name}: {label} must be > 0 seconds, got {limit}")
        if retry_on is not None and autoretry_for is not None:
            raise ConfigurationError(f"task {task_name}: give retry_on or its alias autoretry_for, not both")
        check_serializer(serializer, f"task {task_name}")
        check_priority(priority, f"task {task_name}")
        rate_limit = s.default_rate_limit if rate_limit is None else rate_limit
        rate = parse_rate(rate_limit, f"task {task_name}")
        if not (acks_late and reject_on_worker_lost):
            raise ConfigurationError(
                f"task {task_name}: acks_late/reject_on_worker_lost=False are not available: cloudq acknowledges a "
                "message only after its outcome is recorded, and runs a lost worker's delivery again (at-least-once)"
            )
        chosen = retry_on if retry_on is not None else autoretry_for
        policy = RetryPolicy(
            max_retries=retries,
            backoff=s.retry_backoff if retry_backoff is None else retry_backoff,
            backoff_max=s.retry_backoff_max if retry_backoff_max is None else retry_backoff_max,
            jitter=s.retry_jitter if retry_jitter is None else retry_jitter,
            retry_on=_exception_types(chosen) if chosen is not None else self._retry_on,
            dont_retry_on=_exception_types(dont_autoretry_for) if dont_autoretry_for is not None else (),
            default_delay=s.default_retry_delay if default_retry_delay is None else default_retry_delay,
            countdown=extra.get("countdown"),
        )
        return dict(
            queue=queue,
            retry_policy=policy,
            time_limit=time_limit if time_limit is not None else s.time_limit,
            soft_time_limit=soft_time_limit,
            idempotent=idempotent,
            ignore_result=ignore_result,
            bind=bind,
            track_started=s.track_started if track_started is None else track_started,
            typing=typing,
            throws=_exception_types(throws) if throws else (),
            priority=priority,
            rate_limit=rate_limit if rate else None,
            rate_per_s=rate,
        )

    # -- periodic tasks ---------------------------------------------------------------------

    def periodic_task(
        self,
        schedule: Any,
        *,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        queue: str | None = None,
        missed: str = "latest",
        options: dict[str, Any] | None = None,
        **task_options: Any,
    ) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Register a task (``task_options`` as ``@app.task``) and run it on ``schedule``: seconds,
        a timedelta, ``every(...)``, ``crontab(...)`` or a cron string. ``name`` names the schedule
        (default: the task's name); ``queue`` is where runs are sent; ``missed`` is what a beat that
        was down sends on its return: the ``latest`` missed run, ``all`` of them, or none (``skip``)."""

        from .periodic import periodic_entry

        def declare(fn: Callable[..., Any]) -> Task[Any, Any]:
            task = fn if isinstance(fn, Task) else self._register(fn, **task_options)
            run_options = {**(options or {}), **({"queue": queue} if queue else {})}
            item = periodic_entry(name or task.name, task.name, schedule, args, kwargs, run_options, missed)
            self._periodic.add(item)
            return task

        return declare

    def add_periodic_task(
        self,
        schedule: Any,
        sig: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        missed: str = "latest",
        **opts: Any,
    ) -> PeriodicTask:
        """Celery's ``add_periodic_task(schedule, task.s(...), name=...)``: the signature's args,
        kwargs and options (``opts`` are more apply_async options) are sent at each due time."""
        from .periodic import periodic_entry, signature_parts

        task_name, sig_args, sig_kwargs, sig_options = signature_parts(sig)
        item = periodic_entry(
            name or task_name,
            task_name,
            schedule,
            tuple(sig_args) + tuple(args),
            {**sig_kwargs, **(kwargs or {})},
            {**sig_options, **opts},
            missed,
        )
        return self._periodic.add(item)

    @property
    def periodic_tasks(self) -> dict[str, PeriodicTask]:
        """Every periodic task by schedule name: declared in code and in ``beat_schedule``."""
        return self._periodic.entries()

    @property
    def _periodic(self) -> PeriodicTable:
        """The periodic tasks declared in code; ``cloudq.periodic`` is imported on first use."""
        if self._periodic_table is None:
            from .periodic import PeriodicTable

            self._periodic_table = PeriodicTable(self)
        return self._periodic_table

    # -- serverless runtimes (from the extras) --------------------------------------------------

    def runtime(self, name: str, **options: Any) -> Any:
        """A serverless runtime of this app by its registered name (``lambda``, ``push_wsgi``,
        ``push_asgi``, ``cloud_event``, or a plugin's): the core names no provider."""
        from .registry import load_runtime

        return load_runtime(name)(self, **options)

    def lambda_handler(self, **options: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """An AWS Lambda handler for SQS batches: ``handler = app.lambda_handler()``."""
        handler: Callable[[dict[str, Any], Any], dict[str, Any]] = self.runtime("lambda", **options)
        return handler

    def push_app(self, kind: str = "wsgi", **options: Any) -> Any:
        """A Pub/Sub push endpoint: ``kind`` is "wsgi", "asgi" or "cloud_event" (Cloud Functions)."""
        if kind not in ("wsgi", "asgi", "cloud_event"):
            raise ConfigurationError(f"push_app kind must be wsgi, asgi or cloud_event, not {kind!r}")
        return self.runtime(kind if kind == "cloud_event" else f"push_{kind}", **options)

    def queues(self) -> list[str]:
        return self.router.queues([t.queue for t in self.tasks.values()])

    def queue_for(self, task: Task[Any, Any], explicit: str | None = None) -> str:
        return self.router.route(task.name, task.queue, explicit)

    # -- producing --------------------------------------------------------------------------

    def AsyncResult(self, task_id: str) -> ResultHandle:  # noqa: N802 - Celery's name
        return AsyncResult(task_id, app=self)

    def send_many(self, signatures: Iterable[Signature]) -> list[ResultHandle]:
        """Validate every call first, then send them grouped by queue in as few requests as the
        broker allows. Nothing is sent when any call is invalid."""
        by_queue, handles = self._prepare(signatures)
        for queue, messages in by_queue.items():
            self.broker.send(queue, messages)
            _published(queue, messages)
        return handles

    async def send_many_async(self, signatures: Iterable[Signature]) -> list[ResultHandle]:
        """``send_many`` without blocking the event loop: brokers with a ``send_async`` (SQS via
        aiobotocore) send natively, others in a worker thread."""
        import asyncio

        from .interfaces import AsyncSender

        by_queue, handles = self._prepare(signatures)
        broker = self.broker
        for queue, messages in by_queue.items():
            if isinstance(broker, AsyncSender):
                await broker.send_async(queue, messages)
            else:
                await asyncio.to_thread(self.broker.send, queue, messages)
            _published(queue, messages)
        return handles

    def _prepare(self, signatures: Iterable[Signature]) -> tuple[dict[str, list[OutgoingMessage]], list[ResultHandle]]:
        """Validate and encode every call (eager mode runs them here instead); composite
        signatures (a chain) expand into the calls they send now."""
        now = time.time()
        self._mark_used("a task was sent")
        by_queue: dict[str, list[OutgoingMessage]] = {}
        handles: list[ResultHandle] = []
        eager: list[tuple[int, str, bytes]] = []
        parent = current_request.get()
        for given in signatures:
            calls, handle = given.expand()
            for sig in calls:
                queue, message, task_id = self._encode(sig, now, parent)
                if handle is None:
                    if self.settings.eager:
                        eager.append((len(handles), task_id, message.body))
                    handles.append(AsyncResult(task_id, app=self))
                elif self.settings.eager:
                    self.run_eagerly(task_id, message.body, store=True, throw=self.settings.eager_propagates)
                if not self.settings.eager:
                    by_queue.setdefault(queue, []).append(message)
            if handle is not None:
                handles.append(handle)
        for index, task_id, body in eager:  # Celery's task_always_eager: apply() in place of the send
            handles[index] = self.run_eagerly(task_id, body, store=True, throw=self.settings.eager_propagates)
        return by_queue, handles

    def messages_for(self, signatures: Iterable[Signature]) -> list[tuple[str, OutgoingMessage]]:
        """The (queue, message) of each call, encoded and validated as a send would, but not sent
        (in eager mode too): the follow-ups a finishing task hands to its runtime's settle step."""
        now = time.time()
        found: list[tuple[str, OutgoingMessage]] = []
        for given in signatures:
            for sig in given.expand()[0]:
                queue, message, _ = self._encode(sig, now, None)
                found.append((queue, message))
        return found

    def _encode(self, sig: Signature, now: float, parent: Request | None) -> tuple[str, OutgoingMessage, str]:
        """One call's queue, message and task id; raises before anything is sent when the call
        cannot be sent (bad arguments or options). Once per ``.delay()``: each step is skipped
        when its option is absent rather than run on a None."""
        opts = sig.options
        if not SEND_OPTIONS.issuperset(opts):
            raise InvalidOptions(
                f"{sig.task}.apply_async: unknown option(s) {', '.join(sorted(set(opts) - SEND_OPTIONS))} "
                f"(cloudq sends with: {', '.join(sorted(SEND_OPTIONS))})"
            )
        task = self.tasks.get(sig.task)
        if task is not None:
            args, kwargs = task.validator.to_message(sig.args, sig.kwargs)
        else:  # a task this producer does not import (signature("proj.add")): JSON, unchecked
            from .validation import to_json_value

            args = to_json_value(list(sig.args), f"args of {sig.task}")
            kwargs = to_json_value(dict(sig.kwargs), f"kwargs of {sig.task}")
        expires_opt = opts.get("expires")
        if isinstance(expires_opt, str):  # a signature's JSON form keeps a datetime as ISO 8601
            try:
                opts = {**opts, "expires": datetime.fromisoformat(expires_opt)}
            except ValueError:
                raise InvalidOptions(
                    f"{sig.task}.apply_async: expires {expires_opt!r} is not an ISO 8601 time"
                ) from None
        eta, expires = _send_times(opts, now)
        delay = max(0.0, eta - now) if eta else 0.0
        task_id = opts.get("task_id") or new_task_id()
        if opts.get("serializer") is not None:
            check_serializer(opts["serializer"], f"{sig.task}.apply_async")
        if opts.get("priority") is not None:
            check_priority(opts["priority"], f"{sig.task}.apply_async")
        extra = _lineage(parent, opts)
        linked = {k: opts[k] for k in _LINKS if opts.get(k)}
        if linked:
            links = options_to_json(sig.task, linked)
            for option, field_name in _LINKS.items():
                if option in links:
                    extra[field_name] = links[option]
        headers = check_headers(opts.get("headers"))
        queue = self.router.route(sig.task, task.queue if task is not None else None, opts.get("queue"))
        if before_task_publish.connected and not self.settings.eager:
            headers = self._before_publish(sig.task, task_id, args, kwargs, extra, queue, headers, opts)
        body = self._build_message(
            task_id,
            sig.task,
            args,
            kwargs,
            sent_at=now,
            eta=eta if delay > 0 else None,
            expires=expires,
            headers=headers,
            key=self.signing_key,
            extra=extra,
        )
        max_delay = self.broker.limits.max_delay_s if not self.settings.eager else None
        if max_delay is not None:
            delay = min(delay, max_delay)
        message = OutgoingMessage(
            body=body,
            delay_s=delay,
            ordering_key=opts.get("ordering_key"),
            dedup_id=task_id,
            attributes={"task": sig.task},
        )
        return queue, message, task_id

    def _before_publish(
        self,
        task: str,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        extra: dict[str, Any],
        queue: str,
        headers: dict[str, str] | None,
        opts: dict[str, Any],
    ) -> dict[str, str] | None:
        """Fire ``before_task_publish`` for one message; the headers to send (receivers may add
        some: tracing's trace context), checked again."""
        from .observability.tracing import messaging_system, publish_idle

        if publish_idle(before_task_publish.receivers, self.settings.tracing):
            return headers
        headers = dict(headers or {})
        before_task_publish.send(
            task,
            body={"id": task_id, "task": task, "args": args, "kwargs": kwargs, **extra},
            exchange="",
            routing_key=queue,
            headers=headers,
            properties={
                "correlation_id": task_id,
                "priority": opts.get("priority"),
                "messaging_system": messaging_system(self.broker),  # cloudq's: for the tracing spans
                "tracing": self.settings.tracing,
            },
            declare=[],
            retry_policy=None,
        )
        return check_headers(headers)

    def run_eagerly(self, task_id: str, body: bytes, *, store: bool, throw: bool) -> EagerResult:
        """Run one encoded task in this thread now (retries included, at once) and return its
        EagerResult; ``store`` also writes the records to the result store; ``throw`` raises the
        task's exception here (Celery's ``task_eager_propagates`` / ``apply(throw=True)``)."""
        from .runtime.executor import EagerWriter, Executor
        from .runtime.revocations import RevokeCheck

        writer = EagerWriter(self.results if store else None)
        executor = Executor(self, writer=writer)
        revoked = RevokeCheck(self).read([task_id]).get(task_id) if store else None  # apply(): as Celery's, unchecked
        outcome = executor.run_eagerly(body, revoked)
        result = EagerResult(task_id, self, writer.records.get(task_id) or revoked, executor.eager_exception)
        for _, message in getattr(outcome, "followups", ()):  # the chain's next step, links: run here too
            self.run_eagerly(message.dedup_id or new_task_id(), message.body, store=store, throw=False)
        if throw and result.failed():
            result.get()  # raises the task's exception
        return result

    def send_task(
        self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> ResultHandle:
        """Send a task by name (it must be registered in this app, so its arguments can be checked)."""
        from .errors import UnknownTask

        task = self.tasks.get(name)
        if task is None:
            raise UnknownTask(f"unknown task {name!r}; this app defines: {', '.join(sorted(self.tasks)) or 'none'}")
        return task.apply_async(args, kwargs, **options)


# the link options a call may carry, and the envelope field each is sent in
_LINKS = {"link": "callbacks", "link_error": "errbacks", "chain": "chain"}


def _lineage(parent: Request | None, options: dict[str, Any]) -> dict[str, Any]:
    """The envelope's optional fields of a call: parent and root ids when sent from a running
    task (Celery's ``parent_id``/``root_id``), ``group_id`` and a per-call ``ignore_result``."""
    extra: dict[str, Any] = {}
    if parent is not None and parent.id:
        extra["parent_id"] = parent.id
        extra["root_id"] = parent.root_id or parent.id
    for name in ("parent_id", "root_id"):  # given (a chain step sent by the executor)
        if options.get(name):
            extra[name] = options[name]
    if options.get("group_id"):
        extra["group"] = options["group_id"]
    if options.get("ignore_result") is not None:
        extra["ignore_result"] = bool(options["ignore_result"])
    if options.get("chord"):
        extra["chord"] = options["chord"]
    return extra


def _published(queue: str, messages: list[OutgoingMessage]) -> None:
    """Fire ``after_task_publish`` for messages just sent (only when someone listens)."""
    if after_task_publish.connected:
        from .envelope import peek

        for message in messages:
            body = peek(message.body)
            after_task_publish.send(body.get("task"), body=body, exchange="", routing_key=queue)


class Conf:
    """``app.conf``: the app's settings by attribute or key, under cloudq or Celery names.
    Writes (``conf.x = v``, ``conf["x"] = v``, ``conf.update(...)``) apply until the app is first
    used; then they raise ConfigurationError."""

    __slots__ = ("_app",)

    def __init__(self, app: App) -> None:
        object.__setattr__(self, "_app", app)

    def _name(self, key: str) -> str:
        from .celery_names import SETTINGS

        target = SETTINGS.get(key, (key, ""))[0]
        if target is None or target not in type(self._app.settings).model_fields:
            raise KeyError(key)
        return target

    def __getitem__(self, key: str) -> Any:
        return getattr(self._app.settings, self._name(key))

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no setting {key!r}") from None

    def __setitem__(self, key: str, value: Any) -> None:
        self._app.update_config({key: value})

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __contains__(self, key: object) -> bool:
        try:
            self._name(str(key))
        except KeyError:
            return False
        return True

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def update(self, values: dict[str, Any] | None = None, /, **more: Any) -> None:
        self._app.update_config({**(values or {}), **more})

    def keys(self) -> list[str]:
        return list(type(self._app.settings).model_fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        return f"<Conf of {self._app.name}>"


def check_serializer(serializer: str | None, where: str) -> None:
    if serializer not in (None, "json"):
        raise ConfigurationError(
            f"{where}: serializer={serializer!r} is not available: cloudq messages and results are JSON only "
            "(never pickle: a message is data, never code)"
        )


def check_priority(priority: Any, where: str) -> None:
    if priority is not None and (type(priority) is not int or not 0 <= priority <= 255):
        raise InvalidOptions(f"{where}: priority must be an int from 0 to 255, got {priority!r}")


def load_app(path: str) -> App:
    """The App at ``module:attribute`` (or the one App in ``module``): how the CLI, pool processes
    and serverless entry points find the user's app. Raises ConfigurationError saying what is wrong."""
    from importlib import import_module

    module_name, _, attr = path.partition(":")
    if not module_name:
        raise ConfigurationError(f"app path {path!r} must be module:attribute (e.g. proj.tasks:app)")
    if module_name.startswith(".") and "/" not in module_name and not module_name.endswith(".py"):
        raise ConfigurationError(f"app path {path!r}: relative module names cannot be imported; give the full module")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        raise ConfigurationError(
            f"app path {path!r} is a file path; -A takes module:attribute, importable from the working "
            f"directory: {_module_of(module_name, attr or 'app')}"
        )
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from None
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise ConfigurationError(f"{module_name!r} has no cloudq App named {attr!r}")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"{module_name!r} defines {len(apps)} cloudq Apps: name one as {module_name}:attribute"
        )
    return apps[0]


def _module_of(file_path: str, attr: str) -> str:
    """What to write instead of a file path (``./proj/tasks.py`` -> ``proj.tasks:app``)."""
    from pathlib import PurePath

    path = PurePath(file_path.replace("\\", "/")).with_suffix("")
    parts = [part for part in path.parts if part != "."]
    if path.is_absolute() or ".." in parts or not parts:
        return f"run from the folder holding it and use -A {path.name}:{attr}"
    return f"use -A {'.'.join(parts)}:{attr}"
