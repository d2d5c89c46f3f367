"""AsyncResult: a handle on a task's outcome in the result store."""

from __future__ import annotations

import builtins
import time
from typing import TYPE_CHECKING, Any

from . import errors, states
from .errors import ResultTimeout, TaskFailed
from .interfaces import ResultRecord

if TYPE_CHECKING:
    from .app import App

# cloudq errors a failed task's .get() raises as themselves (one-message constructors)
_REBUILDABLE = {
    f"cloudq.errors.{cls.__name__}": cls
    for cls in (
        errors.TimeLimitExceeded,
        errors.TaskExpired,
        errors.InvalidArguments,
        errors.UnknownTask,
        errors.WorkerLost,
        errors.NotSerializable,
        errors.ResultTooLarge,
        errors.MalformedMessage,
    )
}


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def rebuild_exception(record: ResultRecord) -> BaseException:
    """The task's own exception when it is a builtin (or a cloudq error), else TaskFailed."""
    name = record.error_type or "Exception"
    message = record.error_message or ""
    cls = _REBUILDABLE.get(name) or getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):  # never SystemExit in the caller
        try:
            exc = cls(message)
        except Exception:
            pass
        else:
            exc.__cause__ = TaskFailed(name, message, record.traceback)
            return exc
    return TaskFailed(name, message, record.traceback)


class AsyncResult:
    __slots__ = ("_record", "app", "id")

    def __init__(self, id: str, app: App | None = None) -> None:
        if app is None:
            from .app import current_app

            app = current_app()
        self.id = id
        self.app = app
        self._record: ResultRecord | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id} {self.status}>"

    def _fetch(self) -> ResultRecord | None:
        if self._record is not None and self._record.terminal:
            return self._record
        self._record = self.app.results.get(self.id)
        return self._record

    @property
    def state(self) -> str:
        record = self._fetch()
        return record.state if record else states.PENDING

    status = state

    def ready(self) -> bool:
        record = self._fetch()
        return bool(record and record.terminal)

    def successful(self) -> bool:
        record = self._fetch()
        return bool(record and record.state == states.SUCCESS)

    def failed(self) -> bool:
        record = self._fetch()
        return bool(record and record.state == states.FAILURE)

    @property
    def result(self) -> Any:
        """The return value on success, the exception on failure, else None (like Celery)."""
        record = self._fetch()
        if record is None:
            return None
        if record.state == states.SUCCESS:
            return record.result
        if record.error_type:
            return rebuild_exception(record)
        return None

    @property
    def traceback(self) -> str | None:
        record = self._fetch()
        return record.traceback if record else None

    @property
    def record(self) -> ResultRecord | None:
        return self._fetch()

    def get(self, timeout: float | None = None, interval: float = 0.1, propagate: bool = True) -> Any:
        """Wait for the outcome. Raises the task's failure, or ResultTimeout after ``timeout`` s."""
        return self._outcome(self._wait(timeout, interval), propagate)

    async def get_async(self, timeout: float | None = None, interval: float = 0.1, propagate: bool = True) -> Any:
        """``get`` for async code: stores with a ``get_async`` (DynamoDB via aiobotocore) are polled
        natively, others from a worker thread, so the event loop never blocks."""
        import asyncio

        reader = getattr(self.app.results, "get_async", None)
        if reader is None:
            return await asyncio.to_thread(self.get, timeout, interval, propagate)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(0.005, interval)
        while True:
            record: ResultRecord | None = await reader(self.id)
            if record is not None and record.terminal:
                self._record = record
                return self._outcome(record, propagate)
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout(record, timeout)
            await asyncio.sleep(pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, interval)

    def _outcome(self, record: ResultRecord, propagate: bool) -> Any:
        if record.state == states.SUCCESS:
            return record.result
        exc = rebuild_exception(record)
        if propagate:
            raise exc
        return exc

    def _wait(self, timeout: float | None, interval: float) -> ResultRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = getattr(self.app.results, "wait", None)
        if waiter is not None:  # stores that can push (listeners) wait without polling
            record: ResultRecord | None = waiter(self.id, timeout)
            if record is not None and record.terminal:
                self._record = record
                return record
            raise self._timeout(record, timeout)
        pause = min(0.005, interval)
        while True:
            record = self._fetch()
            if record is not None and record.terminal:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout(record, timeout)
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
            pause = min(pause * 2, interval)

    def _timeout(self, record: ResultRecord | None, timeout: float | None) -> ResultTimeout:
        state = record.state if record else states.PENDING
        return ResultTimeout(f"task {self.id} still {state} after {timeout}s")

    def forget(self) -> None:
        self.app.results.forget(self.id)
        self._record = None
