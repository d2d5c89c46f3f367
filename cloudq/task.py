"""Task: a registered function with its options, and the producer API (delay, apply_async, map)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .canvas.signature import Signature
from .errors import InvalidOptions, MaxRetriesExceededError, Retry
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .app import App
    from .canvas.mapping import chunks
    from .results import AsyncResult, EagerResult
    from .validation import ArgumentValidator

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(slots=True)
class Request:
    """What a running task can know about its own delivery (``self.request``), Celery's names.

    ``eta``/``expires`` are epoch seconds; ``timelimit`` is ``(hard, soft)`` in seconds;
    ``delivery_info`` has ``routing_key``/``queue`` (the queue it came from) and ``redelivered``.
    Outside a run (the task called as a function) ``called_directly`` is True and ``id`` None.
    Its fields can be set, as those of Celery's request ``Context`` (not frozen: one is built per
    run, and a frozen 19-field dataclass took twice as long to build). The executor builds it
    positionally (``Executor._request``): a new field goes last."""

    id: str | None
    task: str
    attempt: int
    retries: int
    queue: str
    eta: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    is_eager: bool = False
    # ``task.retry(throw=False)`` leaves its Retry here: the executor retries after the task returns
    pending_retry: list[Retry] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    expires: float | None = None
    hostname: str | None = None
    redelivered: bool = False
    called_directly: bool = False
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    timelimit: tuple[float | None, float | None] = (None, None)

    @property
    def correlation_id(self) -> str | None:
        """Celery's message correlation id: the task id."""
        return self.id

    @property
    def delivery_info(self) -> dict[str, Any]:
        return {"routing_key": self.queue, "queue": self.queue, "redelivered": self.redelivered}


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """Celery's ``einfo`` as the hooks and signals get it: the exception and its traceback text."""

    exception: BaseException
    traceback: str

    @property
    def type(self) -> type[BaseException]:
        return type(self.exception)

    def __str__(self) -> str:
        return self.traceback


current_request: ContextVar[Request | None] = ContextVar("cloudq_request", default=None)


def check_headers(headers: Any) -> dict[str, str] | None:
    """Headers are strings to strings (every broker carries them as such): anything else is
    refused at send, naming the header, rather than dead-lettered at the worker."""
    if headers is None:
        return None
    if not isinstance(headers, dict):
        raise InvalidOptions(f"headers must be a dict of str to str, got {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidOptions(
                f"header {key!r} must be a string mapped to a string, got {type(value).__name__} {value!r:.60}: "
                "convert it (e.g. str() or json.dumps()) before sending"
            )
    return headers


class Task(Generic[P, R]):
    """Calling a Task runs the function locally; ``delay``/``apply_async`` send it to a queue.

    Made by ``@app.task`` around a function, or Celery 4+ style as a class: subclass it, give
    it ``name`` (default ``module.ClassName``), task options as class attributes and a
    ``run(self, ...)`` method, then ``app.register_task(MyTask())``. Handlers (``on_success``...)
    are methods either way (``base=`` names the class for decorated functions)."""

    def __init__(
        self,
        app: App | None = None,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        **attrs: Any,
    ) -> None:
        """``Task()`` without an app is a class-based task waiting for ``app.register_task``."""
        self.options: dict[str, Any] = {}  # as given to @app.task: re-applied when app.conf changes
        self.shared = False  # registered by shared_task
        if app is not None:
            assert fn is not None and name is not None, "a Task with an app needs fn and name"
            self.bind_to(app, fn, name, attrs)

    def bind_to(self, app: App, fn: Callable[P, R], name: str, attrs: dict[str, Any]) -> None:
        """Attach the task to ``app`` with its body and options (the App's registration does this)."""
        self.app = app
        self.fn = fn
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.configure(**attrs)
        own_class = getattr(fn, "__self__", None) is self  # class-based: fn is this task's run()
        described = type(self) if own_class else fn
        self.__doc__ = described.__doc__
        self.__name__ = getattr(described, "__name__", name)
        self.__module__ = getattr(described, "__module__", __name__)
        self.__wrapped__ = fn

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The task's body: a class-based task defines it; a decorated task's is its function."""
        return self.fn(self, *args, **kwargs) if self.bind else self.fn(*args, **kwargs)  # type: ignore[arg-type]

    def configure(
        self,
        *,
        queue: str | None,
        retry_policy: RetryPolicy,
        time_limit: float | None,
        idempotent: bool,
        soft_time_limit: float | None = None,
        ignore_result: bool,
        bind: bool,
        track_started: bool = False,
        typing: bool = True,
        throws: tuple[type[BaseException], ...] = (),
        priority: int | None = None,
        rate_limit: str | float | None = None,
        rate_per_s: float | None = None,
    ) -> None:
        """Set the options (at registration, and again when the app's settings change)."""
        self.queue = queue
        self.retry_policy = retry_policy
        self.max_retries = retry_policy.max_retries
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self.autoretry_for = retry_policy.retry_on
        self.default_retry_delay = retry_policy.default_delay
        self.idempotent = idempotent
        self.ignore_result = ignore_result
        self.bind = bind
        self.track_started = track_started
        self.typing = typing
        self.throws = throws
        self.priority = priority
        self.rate_limit = rate_limit  # as given, Celery's: "10/m"; None: no limit
        self.rate_per_s = rate_per_s  # the same in tasks per second, in each worker (runtime/ratelimit.py)
        self.acks_late = True  # cloudq always acknowledges after the outcome is recorded
        self._validator: ArgumentValidator | None = None

    # -- hooks (Celery's Task handlers): override them in a base= class --------------------------

    def before_start(self, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Called by the executor before the task runs."""

    def on_success(self, retval: Any, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Called after the task succeeded and its result was recorded."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: list[Any], kwargs: dict[str, Any], einfo: ExceptionInfo
    ) -> None:
        """Called after the task failed for good and its failure was recorded."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: list[Any], kwargs: dict[str, Any], einfo: ExceptionInfo
    ) -> None:
        """Called when the task will be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        einfo: ExceptionInfo | None,
    ) -> None:
        """Called after every run (success, failure or retry), after the other hooks."""

    def update_state(self, task_id: str | None = None, state: str | None = None, meta: Any = None) -> None:
        """Celery's ``update_state``: record a state (a custom one like ``"PROGRESS"``) and its
        ``meta`` (JSON) for ``AsyncResult.state``/``.info``; one result-store write. Terminal
        states are the executor's to write."""
        from . import states as _states
        from .errors import InvalidOptions
        from .interfaces import ResultRecord
        from .validation import to_json_value

        request = current_request.get()
        task_id = task_id or (request.id if request else None)
        if not task_id:
            raise InvalidOptions(f"{self.name}.update_state: no task id (called outside a run: pass task_id=)")
        state = state or _states.STARTED
        if state in _states.TERMINAL_STATES:
            raise InvalidOptions(
                f"{self.name}.update_state: {state} is written by cloudq when the task ends; return or raise instead"
            )
        record = ResultRecord(
            task_id,
            state,
            self.name,
            result=to_json_value(meta, f"meta of {self.name}.update_state"),
            attempts=request.attempt if request and request.id == task_id else 0,
        )
        if self.app.settings.result_extended and request and request.id == task_id:
            record.args, record.kwargs, record.queue = request.args, request.kwargs, request.queue
            record.worker = request.hostname
        keep = self.app.settings.result_expires
        if keep:
            import time

            record.expires_at = time.time() + keep
        self.app.results.set(record)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the body here (Celery's ``__call__``: a subclass may wrap it; workers call it then)."""
        return self.run(*args, **kwargs)

    @property
    def validator(self) -> ArgumentValidator:
        if self._validator is None:  # built on first use: keeps module import cheap
            from .validation import ArgumentValidator

            self._validator = ArgumentValidator(self.fn, self.name, skip_first=self.bind, typing=self.typing)
        return self._validator

    @property
    def request(self) -> Request:
        """The delivery being run in this thread/coroutine; outside a run, a request that says
        ``called_directly=True`` (never None, as in Celery)."""
        request = current_request.get()
        if request is None:
            return Request(None, self.name, 0, 0, "", called_directly=True)
        return request

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        ordering_key: str | None = None,
        headers: dict[str, str] | None = None,
        ignore_result: bool | None = None,
        serializer: str | None = None,
        priority: int | None = None,
        group_id: str | None = None,
        link: Signature | list[Signature] | None = None,
        link_error: Signature | list[Signature] | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
    ) -> AsyncResult:
        """Validate and send; raises InvalidArguments or MessageTooLarge before anything is sent.
        ``ignore_result`` overrides the task's for this call; ``serializer`` is "json" only;
        ``priority`` is checked (0-255) and ignored: no cloudq broker orders by priority.
        ``link``/``link_error``: signatures (or lists) called on success (result prepended) or
        on final failure, sent by the worker as part of this task's outcome."""
        named = dict(
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            task_id=task_id,
            ordering_key=ordering_key,
            headers=headers,
            ignore_result=ignore_result,
            serializer=serializer,
            priority=priority,
            group_id=group_id,
            parent_id=parent_id,
            root_id=root_id,
        )
        # only the options given: a None is no option, and the send path skips what is absent
        options: dict[str, Any] = {name: value for name, value in named.items() if value is not None}
        for key, value in (("link", link), ("link_error", link_error)):
            if value is not None:
                options[key] = list(value) if isinstance(value, (list, tuple)) else [value]
        return self.app.send_many([Signature(self, tuple(args), kwargs or {}, options)])[0]

    def apply(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        throw: bool | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> EagerResult:
        """Celery's ``apply``: run the task here and now (validated as a worker would, retries at
        once) and return an EagerResult (``.get()``, ``.state``); nothing is sent or stored.
        ``throw`` (default: the ``eager_propagates`` setting) raises the task's exception here.
        Send options (``countdown``, ``queue``...) are accepted and ignored, as in Celery."""
        import time

        from .app import new_task_id
        from .envelope import build

        call_args, call_kwargs = self.validator.to_message(tuple(args), kwargs or {})
        task_id = task_id or new_task_id()
        body = build(
            task_id,
            self.name,
            call_args,
            call_kwargs,
            sent_at=time.time(),
            headers=check_headers(headers),
            key=self.app.signing_key,
        )
        propagate = self.app.settings.eager_propagates if throw is None else throw
        return self.app.run_eagerly(task_id, body, store=False, throw=propagate)

    async def delay_async(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay`` for async code: never blocks the event loop."""
        return (await self.app.send_many_async([Signature(self, args, kwargs)]))[0]

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature:
        """Celery's ``task.s(*args, **kwargs)``: a signature of this call (partial, mutable)."""
        return Signature(self, args, kwargs)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature:
        """An immutable signature: a chain or link does not prepend the previous result."""
        return Signature(self, args, kwargs, immutable=True)

    def signature(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        *,
        immutable: bool = False,
        **more_options: Any,
    ) -> Signature:
        """Celery's ``task.signature(args, kwargs, options, **options)``: keyword arguments here are
        send OPTIONS (``add.signature((2, 2), countdown=10)``), not the task's kwargs."""
        return Signature(self, tuple(args or ()), kwargs, options, immutable=immutable, **more_options)

    subtask = signature

    def send_each(self, items: Iterable[Any], **options: Any) -> list[AsyncResult]:
        """Send one task per item (a tuple is spread as positional arguments) in batched calls
        (what ``task.map`` did before the canvas gave it Celery's meaning)."""
        return self.app.send_many(
            [Signature(self, item if isinstance(item, tuple) else (item,), {}, options) for item in items]
        )

    def map(self, items: Iterable[Any]) -> Signature:
        """Celery's ``map``: a signature of ONE task calling this one on each item in order
        (``.delay()`` sends it; its result is the list). To send one task per item, ``send_each``."""
        from .canvas.mapping import map_signature

        return map_signature(self, items)

    def starmap(self, items: Iterable[Any]) -> Signature:
        """Celery's ``starmap``: as ``map``, calling ``task(*item)``."""
        from .canvas.mapping import map_signature

        return map_signature(self, items, star=True)

    def chunks(self, items: Iterable[Any], n: int) -> chunks:
        """Celery's ``chunks``: the items (argument tuples) in n-sized starmap tasks, sent as a group."""
        from .canvas.mapping import chunks

        return chunks(self, items, n)

    def retry(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | float | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        queue: str | None = None,
    ) -> Retry:
        """Celery's ``self.retry``: RAISES ``Retry`` (``raise self.retry(...)`` works too) to run the
        task again after ``countdown`` seconds, at ``eta``, or after ``default_retry_delay``, with
        new ``args``/``kwargs`` or on another ``queue`` if given. When the task's ``max_retries``
        (or this call's) are spent it raises ``exc`` if given, else ``MaxRetriesExceededError``.
        ``throw=False`` returns the Retry instead: the task's return value is then dropped and
        the retry happens when it returns."""
        from .app import to_epoch

        request = current_request.get()
        retry = Retry(
            countdown,
            exc,
            eta=to_epoch(eta),
            max_retries=max_retries,
            args=None if args is None else tuple(args),
            kwargs=kwargs,
            queue=queue,
        )
        if request is None:  # called directly, as a function: nothing to retry
            raise exc if exc is not None else retry
        if not self.retry_policy.retries_left(request.attempt, max_retries, explicit=True):
            if exc is not None:
                raise exc
            limit = max_retries if max_retries is not None else self.retry_policy.max_retries
            raise MaxRetriesExceededError(f"Can't retry {self.name}[{request.id}]: max_retries={limit} spent")
        if not throw:
            request.pending_retry.append(retry)
            return retry
        raise retry
