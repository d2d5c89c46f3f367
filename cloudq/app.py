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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import ConfigurationError, InvalidOptions
from .interfaces import OutgoingMessage
from .results import AsyncResult, EagerResult
from .routing import Router
from .task import Signature, Task, _check_headers

if TYPE_CHECKING:
    from .config import Settings
    from .interfaces import Broker, ResultStore
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


def current_app() -> App:
    """The most recently created App: the fallback for ``AsyncResult(id)`` without ``app=``."""
    app = _last_app() if _last_app else None
    if app is None:
        raise ConfigurationError("no cloudq App exists yet: pass app= to AsyncResult")
    return app


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
    from .envelope import check_epoch

    eta, countdown = to_epoch(options.get("eta"), now), options.get("countdown")
    expires = _expires_epoch(options.get("expires"), now)
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

    def __init__(self, name: str, broker: str | None = None, results: str | None = None, **config: Any) -> None:
        from .config import load_settings
        from .envelope import build

        global _last_app
        self.name = name
        self.settings: Settings = load_settings({"broker": broker, "results": results, **config})
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.router = Router(self.settings.routes, self.settings.default_queue)
        key = self.settings.signing_key
        self.signing_key: bytes | None = key.get_secret_value().encode() if key else None
        self._broker: Broker | None = None
        self._results: ResultStore | None = None
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._build_message = build
        retry_on = list(self.settings.retry_on) + list(self.settings.autoretry_for)
        self._retry_on = _exception_types(retry_on)
        self._check_backends()
        _last_app = weakref.ref(self)

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

                    self._broker = open_broker(self.broker_url, self.settings)
        return self._broker

    @property
    def results(self) -> ResultStore:
        if self._results is None:
            with self._lock:
                if self._results is None:
                    from .registry import open_results

                    self._results = open_results(self.results_url, self.settings)
        return self._results

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            from .runtime.executor import Executor

            self._executor = Executor(self)
        return self._executor

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
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
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
    ) -> Task[Any, Any]:
        """Celery's retry options: ``autoretry_for`` (= ``retry_on``; default: the app's
        ``retry_on`` setting, empty unless set), ``dont_autoretry_for``, ``retry_kwargs``
        (``max_retries``, ``countdown``), ``default_retry_delay``, ``retry_backoff``,
        ``retry_backoff_max``, ``retry_jitter``; ``max_retries=None`` retries forever."""
        from .retry import RetryPolicy

        s = self.settings
        task_name = name or _task_name(self, fn)
        if task_name in self.tasks and self.tasks[task_name].fn is not fn:
            raise ConfigurationError(f"task name {task_name!r} is already registered by another function")
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
        for label, limit in (("time_limit", time_limit), ("soft_time_limit", soft_time_limit)):
            if limit is not None and limit <= 0:
                raise ConfigurationError(f"task {task_name}: {label} must be > 0 seconds, got {limit}")
        if soft_time_limit is not None and inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"task {task_name}: soft_time_limit is for sync tasks (raised in the task's thread); "
                "an async def task can use asyncio.timeout() inside, and time_limit as the hard limit"
            )
        if retry_on is not None and autoretry_for is not None:
            raise ConfigurationError(f"task {task_name}: give retry_on or its alias autoretry_for, not both")
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
        task: Task[Any, Any] = Task(
            self,
            fn,
            name=task_name,
            queue=queue,
            retry_policy=policy,
            time_limit=time_limit if time_limit is not None else s.time_limit,
            soft_time_limit=soft_time_limit,
            idempotent=idempotent,
            ignore_result=ignore_result,
            bind=bind,
        )
        self.tasks[task_name] = task
        return task

    # -- serverless runtimes (from the extras) --------------------------------------------------

    def lambda_handler(self, **options: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """An AWS Lambda handler for SQS batches: ``handler = app.lambda_handler()``."""
        from .registry import load_runtime

        handler: Callable[[dict[str, Any], Any], dict[str, Any]] = load_runtime("lambda")(self, **options)
        return handler

    def push_app(self, kind: str = "wsgi", **options: Any) -> Any:
        """A Pub/Sub push endpoint: ``kind`` is "wsgi", "asgi" or "cloud_event" (Cloud Functions)."""
        from .registry import load_runtime

        if kind not in ("wsgi", "asgi", "cloud_event"):
            raise ConfigurationError(f"push_app kind must be wsgi, asgi or cloud_event, not {kind!r}")
        return load_runtime(kind if kind == "cloud_event" else f"push_{kind}")(self, **options)

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
        return handles

    async def send_many_async(self, signatures: Iterable[Signature]) -> list[ResultHandle]:
        """``send_many`` without blocking the event loop: brokers with a ``send_async`` (SQS via
        aiobotocore) send natively, others in a worker thread."""
        import asyncio

        by_queue, handles = self._prepare(signatures)
        send_async = getattr(self.broker, "send_async", None)
        for queue, messages in by_queue.items():
            if send_async is not None:
                await send_async(queue, messages)
            else:
                await asyncio.to_thread(self.broker.send, queue, messages)
        return handles

    def _prepare(self, signatures: Iterable[Signature]) -> tuple[dict[str, list[OutgoingMessage]], list[ResultHandle]]:
        """Validate and encode every call (eager mode runs them here instead)."""
        build = self._build_message
        now = time.time()
        max_delay = self.broker.limits.max_delay_s if not self.settings.eager else None
        by_queue: dict[str, list[OutgoingMessage]] = {}
        handles: list[ResultHandle] = []
        eager: list[tuple[int, str, bytes]] = []
        for sig in signatures:
            opts = sig.options
            args, kwargs = sig.task.validator.to_message(sig.args, sig.kwargs)
            eta, expires = _send_times(opts, now)
            delay = max(0.0, eta - now) if eta else 0.0
            task_id = opts.get("task_id") or new_task_id()
            body = build(
                task_id,
                sig.task.name,
                args,
                kwargs,
                sent_at=now,
                eta=eta if delay > 0 else None,
                expires=expires,
                headers=_check_headers(opts.get("headers")),
                key=self.signing_key,
            )
            if self.settings.eager:
                eager.append((len(handles), task_id, body))
            else:
                queue = self.queue_for(sig.task, opts.get("queue"))
                if max_delay is not None:
                    delay = min(delay, max_delay)
                by_queue.setdefault(queue, []).append(
                    OutgoingMessage(
                        body=body,
                        delay_s=delay,
                        ordering_key=opts.get("ordering_key"),
                        dedup_id=task_id,
                        attributes={"task": sig.task.name},
                    )
                )
            handles.append(AsyncResult(task_id, app=self))
        for index, task_id, body in eager:  # Celery's task_always_eager: apply() in place of the send
            handles[index] = self.run_eagerly(task_id, body, store=True, throw=self.settings.eager_propagates)
        return by_queue, handles

    def run_eagerly(self, task_id: str, body: bytes, *, store: bool, throw: bool) -> EagerResult:
        """Run one encoded task in this thread now (retries included, at once) and return its
        EagerResult; ``store`` also writes the records to the result store; ``throw`` raises the
        task's exception here (Celery's ``task_eager_propagates`` / ``apply(throw=True)``)."""
        from .runtime.executor import EagerWriter, Executor

        writer = EagerWriter(self.results if store else None)
        executor = Executor(self, writer=writer)
        executor.run_eagerly(body)
        result = EagerResult(task_id, self, writer.records.get(task_id), executor.eager_exception)
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
