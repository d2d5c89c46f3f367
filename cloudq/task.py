"""Task: a registered function with its options, and the producer API (delay, apply_async, map)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .errors import Retry
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .app import App
    from .results import AsyncResult
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

    def retry(self, countdown: float | None = None, exc: BaseException | None = None) -> Retry:
        """``raise task.retry(countdown=5)`` asks for another attempt (counts against max_retries)."""
        return Retry(countdown=countdown, exc=exc)
