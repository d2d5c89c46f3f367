"""Task: a registered function with its options, and the producer API (delay, apply_async, map)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .errors import MaxRetriesExceededError, Retry
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .app import App
    from .results import AsyncResult, EagerResult
    from .validation import ArgumentValidator

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Request:
    """What a running task can know about its own delivery (``task.request`` while it runs)."""

    id: str
    task: str
    attempt: int
    retries: int
    queue: str
    eta: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    is_eager: bool = False
    # ``task.retry(throw=False)`` leaves its Retry here: the executor retries after the task returns
    pending_retry: list[Retry] = field(default_factory=list)


_current_request: ContextVar[Request | None] = ContextVar("cloudq_request", default=None)


@dataclass(frozen=True, slots=True)
class Signature:
    """A task call packed for later: what ``task.s(...)`` returns and ``app.send_many`` takes."""

    task: Task[Any, Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def delay(self) -> AsyncResult:
        return self.task.apply_async(self.args, self.kwargs, **self.options)


def _check_headers(headers: Any) -> dict[str, str] | None:
    """Headers are strings to strings (every broker carries them as such): anything else is
    refused at send, naming the header, rather than dead-lettered at the worker."""
    from .errors import InvalidOptions

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
    """Calling a Task runs the function locally; ``delay``/``apply_async`` send it to a queue."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str | None,
        retry_policy: RetryPolicy,
        time_limit: float | None,
        idempotent: bool,
        soft_time_limit: float | None = None,
        ignore_result: bool,
        bind: bool,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
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
        self.is_async = inspect.iscoroutinefunction(fn)
        self._validator: ArgumentValidator | None = None
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.bind:
            return self.fn(self, *args, **kwargs)  # type: ignore[arg-type]
        return self.fn(*args, **kwargs)

    @property
    def validator(self) -> ArgumentValidator:
        if self._validator is None:  # built on first use: keeps module import cheap
            from .validation import ArgumentValidator

            self._validator = ArgumentValidator(self.fn, self.name, skip_first=self.bind)
        return self._validator

    @property
    def request(self) -> Request | None:
        """The delivery being run in this thread/coroutine, or None outside a worker."""
        return _current_request.get()

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
    ) -> AsyncResult:
        """Validate and send; raises InvalidArguments or MessageTooLarge before anything is sent."""
        return self.app.send_many(
            [
                Signature(
                    self,
                    tuple(args),
                    kwargs or {},
                    dict(
                        countdown=countdown,
                        eta=eta,
                        expires=expires,
                        queue=queue,
                        task_id=task_id,
                        ordering_key=ordering_key,
                        headers=headers,
                    ),
                )
            ]
        )[0]

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

        call_args, call_kwargs = self.validator.to_message(tuple(args), kwargs or {})
        task_id = task_id or new_task_id()
        body = self.app._build_message(
            task_id,
            self.name,
            call_args,
            call_kwargs,
            sent_at=time.time(),
            headers=_check_headers(headers),
            key=self.app.signing_key,
        )
        propagate = self.app.settings.eager_propagates if throw is None else throw
        return self.app.run_eagerly(task_id, body, store=False, throw=propagate)

    async def delay_async(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay`` for async code: never blocks the event loop."""
        return (await self.app.send_many_async([Signature(self, args, kwargs)]))[0]

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature:
        return Signature(self, args, kwargs)

    signature = s

    def map(self, items: Iterable[Any], **options: Any) -> list[AsyncResult]:
        """Send one task per item (a tuple is spread as positional arguments) in batched calls."""
        return self.app.send_many(
            [Signature(self, item if isinstance(item, tuple) else (item,), {}, options) for item in items]
        )

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

        request = self.request
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
