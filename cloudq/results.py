"""AsyncResult: a handle on a task's outcome in the result store."""

from __future__ import annotations

import builtins
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import errors, states
from .errors import ResultTimeout, TaskFailed
from .interfaces import AsyncResultReader, ManyReader, ResultRecord, ResultStore, ResultWaiter, RuntimeReader
from .util.polling import PollSchedule

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
        errors.SoftTimeLimitExceeded,
        errors.MaxRetriesExceededError,
        errors.TaskRevokedError,
        errors.ChordError,
        errors.InternalError,
        errors.Reject,
    )
}
SYNC_SUBTASK_ERROR = (
    "Never call result.get() within a task! It waits for another task while holding this worker's slot, "
    "which deadlocks once every slot waits; chain the tasks instead, or pass disable_sync_subtasks=False "
    "to .get() if you know it cannot deadlock"
)


def read_many(store: ResultStore, task_ids: Sequence[str], runtime: bool = False) -> dict[str, ResultRecord]:
    """The live records of ``task_ids`` keyed by id: one ``get_many`` where the store has it
    (ManyReader), else one ``get`` per id. ``runtime``: a runtime reads for itself, through its
    own client where the store keeps producers' apart (RuntimeReader)."""
    if not task_ids:
        return {}
    if runtime and isinstance(store, RuntimeReader):
        return store.get_many_in_runtime(task_ids)
    if isinstance(store, ManyReader):
        return store.get_many(task_ids)
    found = {}
    for task_id in dict.fromkeys(task_ids):
        record = store.get(task_id)
        if record is not None:
            found[task_id] = record
    return found


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _find_class(name: str, allowed_modules: tuple[str, ...]) -> Any:
    """The class named ``module.Qualname`` if its module is already imported (or is in the
    ``exception_modules`` allow-list, which is imported): never imports a path a result names."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None and module_name in allowed_modules:
            from importlib import import_module

            try:
                module = import_module(module_name)
            except ImportError:
                module = None
        if module is None:
            continue
        value: Any = module
        for attr in parts[cut:]:
            value = getattr(value, attr, None)
        return value
    return None


def rebuild_exception(record: ResultRecord, allowed_modules: tuple[str, ...] = ()) -> BaseException:
    """The task's own exception when its class can be found: a builtin, a cloudq error, or a
    class of a module this process has already imported (or listed in ``exception_modules``);
    else TaskFailed with the remote type, message and traceback."""
    name = record.error_type or "Exception"
    message = record.error_message or ""
    cls = _REBUILDABLE.get(name) or getattr(builtins, name, None)
    if cls is None and "." in name:
        cls = _find_class(name, allowed_modules)
    if isinstance(cls, type) and issubclass(cls, Exception):  # never SystemExit in the caller
        try:
            exc = cls(message)
        except Exception:
            pass
        else:
            exc.__cause__ = TaskFailed(name, message, record.traceback)
            return exc
    return TaskFailed(name, message, record.traceback)


_FROM_RECORD: Any = object()  # an AsyncResult's parent not given: read from its record


class AsyncResult:
    __slots__ = ("_parent", "_record", "app", "id")

    def __init__(self, id: str, app: App | None = None, parent: AsyncResult | None = None) -> None:
        """``parent``: the result of the task before this one in its chain (Celery's
        ``result.parent``), set on the handles a chain's send returns; when not given, ``parent``
        reads it from the record."""
        if app is None:
            from .app import current_app

            app = current_app()
        self.id = id
        self.app = app
        self._parent: AsyncResult | None = _FROM_RECORD if parent is None else parent
        self._record: ResultRecord | None = None

    @property
    def parent(self) -> AsyncResult | None:
        """The result of the task that sent this one (a chain's previous step, the task whose link
        or whose ``delay`` sent it), as set on the handle a send returned, else from the record's
        ``parent_id`` (one read, none once the record is final): None for a task sent from outside
        any task, and while it has no record (queued, or its result expired)."""
        if self._parent is not _FROM_RECORD:
            return self._parent
        record = self._fetch()
        found = AsyncResult(record.parent_id, app=self.app) if record is not None and record.parent_id else None
        if record is not None and record.terminal:
            self._parent = found
        return found

    @parent.setter
    def parent(self, value: AsyncResult | None) -> None:
        self._parent = value

    @property
    def children(self) -> list[AsyncResult] | None:
        """The tasks this one sent once it succeeded (its chain's next step, its links), each with
        this result as ``parent``: read from the record that says they were sent (one more read).
        None while the task has not ended (as Celery), [] when it ended and sent none. Tasks sent
        with ``delay`` from inside it are not tracked (Celery's ``trail``)."""
        record = self._fetch()
        if record is None or not record.terminal:
            return None
        if record.state != states.SUCCESS:
            return []
        from .canvas.followups import children_id, sent_ids

        return [AsyncResult(i, app=self.app, parent=self) for i in sent_ids(self.app.results.get(children_id(self.id)))]

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id} {self.status}>"

    def __eq__(self, other: object) -> bool:
        """Equal to another result with the same id, or to the id itself (as in Celery)."""
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.id)

    def _exception(self, record: ResultRecord) -> BaseException:
        return rebuild_exception(record, tuple(self.app.settings.exception_modules))

    def _assert_will_not_block(self) -> None:
        """Celery's ``disable_sync_subtasks``: waiting on a task from inside a running task holds
        a worker slot while it waits, and deadlocks once every slot does."""
        from .task import current_request

        request = current_request.get()
        if request is not None and not request.is_eager:
            raise RuntimeError(SYNC_SUBTASK_ERROR)

    @property
    def final_record(self) -> ResultRecord | None:
        """The terminal record already read (it never changes again), else None: no read."""
        record = self._record
        return record if record is not None and record.terminal else None

    def take_record(self, record: ResultRecord | None) -> None:
        """Use ``record``, read elsewhere (a group's batched read), as this result's latest state."""
        self._record = record

    def assert_will_not_block(self) -> None:
        """Raise RuntimeError when called from inside a running task (see ``get``)."""
        self._assert_will_not_block()

    def outcome(self, record: ResultRecord, propagate: bool) -> Any:
        """What ``get`` returns (or raises, with ``propagate``) for terminal ``record``."""
        return self._outcome(record, propagate)

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
        """The return value on success, the exception on failure or retry, the ``meta`` of a state
        set with ``update_state`` (e.g. PROGRESS), else None (like Celery)."""
        record = self._fetch()
        if record is None:
            return None
        if record.error_type and record.state != states.SUCCESS:
            return self._exception(record)
        return record.result

    info = result

    # -- extended results: what cloudq's record carries ------------------------------------------

    @property
    def name(self) -> str | None:
        record = self._fetch()
        return record.task_name or None if record else None

    @property
    def date_done(self) -> datetime | None:
        """When the task ended (UTC), None until then."""
        record = self._fetch()
        if record is None or record.finished_at is None or not record.terminal:
            return None
        return datetime.fromtimestamp(record.finished_at, UTC)

    @property
    def retries(self) -> int | None:
        """Retries spent by the run the record describes (attempts - 1)."""
        record = self._fetch()
        return max(0, record.attempts - 1) if record and record.attempts else None

    @property
    def worker(self) -> str | None:
        """The worker's hostname (``result_extended``), else the worker that claimed an idempotent
        task (``host:pid``; the claim's owner is ``host:pid/message id``)."""
        record = self._fetch()
        if record is None:
            return None
        return record.worker or (record.claim_owner.partition("/")[0] if record.claim_owner else None)

    @property
    def args(self) -> list[Any] | None:
        """The positional arguments as sent (JSON), with ``result_extended``; else None."""
        record = self._fetch()
        return record.args if record else None

    @property
    def kwargs(self) -> dict[str, Any] | None:
        """The keyword arguments as sent (JSON), with ``result_extended``; else None."""
        record = self._fetch()
        return record.kwargs if record else None

    @property
    def queue(self) -> str | None:
        """The queue the task was delivered from, with ``result_extended``; else None."""
        record = self._fetch()
        return record.queue if record else None

    def maybe_throw(self, propagate: bool = True, callback: Callable[[Any], Any] | None = None) -> None:
        """Raise the task's exception if it failed (or was revoked); ``callback(result)`` otherwise
        once it is ready. Does not wait."""
        record = self._fetch()
        if record is None or not record.terminal:
            return
        if record.state != states.SUCCESS and propagate:
            raise self._exception(record)
        if callback is not None:
            callback(self.result)

    def then(
        self, callback: Callable[[AsyncResult], Any], on_error: Callable[[BaseException], Any] | None = None
    ) -> AsyncResult:
        """Call ``callback(self)`` when the task is ready: at once if it is, else from a daemon
        thread that waits for it (polling as ``get`` does). ``on_error(exc)`` if waiting fails."""
        import threading

        def wait_then_call() -> None:
            try:
                self.get(propagate=False, disable_sync_subtasks=False)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
                return
            callback(self)

        if self.ready():
            callback(self)
        else:
            threading.Thread(target=wait_then_call, name=f"cloudq-then-{self.id}", daemon=True).start()
        return self

    @property
    def traceback(self) -> str | None:
        record = self._fetch()
        return record.traceback if record else None

    @property
    def record(self) -> ResultRecord | None:
        return self._fetch()

    def get(
        self,
        timeout: float | None = None,
        interval: float = 0.1,
        propagate: bool = True,
        disable_sync_subtasks: bool = True,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Any:
        """Wait for the outcome. Raises the task's failure, or ResultTimeout after ``timeout`` s.
        Inside a running task it raises RuntimeError at once (Celery's ``disable_sync_subtasks``).
        ``on_message(meta)`` is called on every state change seen while waiting (progress from
        ``update_state``), with Celery's ``{"task_id", "status", "result", "traceback", "date_done"}``;
        the store is polled at ``get``'s usual rate (no faster)."""
        if disable_sync_subtasks:
            self._assert_will_not_block()
        if on_message is not None:
            return self._outcome(self._poll(timeout, interval, on_message), propagate)
        return self._outcome(self._wait(timeout, interval), propagate)

    wait = get

    async def get_async(self, timeout: float | None = None, interval: float = 0.1, propagate: bool = True) -> Any:
        """``get`` for async code: stores with a ``get_async`` (DynamoDB via aiobotocore) are polled
        natively, others from a worker thread, so the event loop never blocks."""
        import asyncio

        store = self.app.results
        if not isinstance(store, AsyncResultReader):
            return await asyncio.to_thread(self.get, timeout, interval, propagate)
        schedule = PollSchedule(timeout, interval)
        while True:
            record: ResultRecord | None = await store.get_async(self.id)
            if record is not None and record.terminal:
                self._record = record
                return self._outcome(record, propagate)
            if schedule.expired():
                raise self._timeout(record, timeout)
            await asyncio.sleep(schedule.next_pause())

    def _outcome(self, record: ResultRecord, propagate: bool) -> Any:
        if record.state == states.SUCCESS:
            return record.result
        exc = self._exception(record)
        if propagate:
            raise exc
        return exc

    def _wait(self, timeout: float | None, interval: float) -> ResultRecord:
        store = self.app.results
        if isinstance(store, ResultWaiter):  # stores that can push (listeners) wait without polling
            record: ResultRecord | None = store.wait(self.id, timeout)
            if record is not None and record.terminal:
                self._record = record
                return record
            raise self._timeout(record, timeout)
        return self._poll(timeout, interval)

    def _poll(
        self, timeout: float | None, interval: float, on_message: Callable[[dict[str, Any]], Any] | None = None
    ) -> ResultRecord:
        """Poll the store (5 ms doubling up to ``interval``), reporting each state change."""
        schedule = PollSchedule(timeout, interval)
        seen: tuple[Any, ...] | None = None
        while True:
            record = self._fetch()
            if on_message is not None and record is not None:
                now = (record.state, record.result, record.error_type, record.attempts)
                if now != seen:
                    seen = now
                    on_message(self._meta(record))
            if record is not None and record.terminal:
                return record
            if schedule.expired():
                raise self._timeout(record, timeout)
            time.sleep(schedule.next_pause())

    def _meta(self, record: ResultRecord) -> dict[str, Any]:
        done = record.finished_at if record.terminal else None
        result = record.result
        if record.error_type and record.state != states.SUCCESS:
            result = {"exc_type": record.error_type, "exc_message": record.error_message}
        return {
            "task_id": self.id,
            "status": record.state,
            "result": result,
            "traceback": record.traceback,
            "date_done": None if done is None else datetime.fromtimestamp(done, UTC).isoformat(),
        }

    def _timeout(self, record: ResultRecord | None, timeout: float | None) -> ResultTimeout:
        state = record.state if record else states.PENDING
        return ResultTimeout(f"task {self.id} still {state} after {timeout}s")

    def forget(self) -> None:
        self.app.results.forget(self.id)
        self._record = None

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | int | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Celery's ``revoke``: the task never runs if it has not started; ``terminate=True`` also
        kills it where it runs in the process pool. A finished task stays finished (a no-op, logged).
        See ``Control.revoke``; ``connection`` and ``wait`` are refused with the reason. An
        EagerResult's run already finished: nothing to revoke."""
        if isinstance(self, EagerResult):
            return
        self.app.control.revoke(
            self.id, terminate=terminate, signal=signal or "SIGTERM", connection=connection, reply=wait, timeout=timeout
        )
        self._record = None


class EagerResult(AsyncResult):
    """What ``task.apply()`` (and ``.delay()`` in eager mode) returns: the outcome of a run that
    already happened in this thread, held in memory (Celery's EagerResult)."""

    __slots__ = ("_exc",)

    def __init__(self, id: str, app: App, record: ResultRecord | None, exc: BaseException | None = None) -> None:
        super().__init__(id, app=app)
        self._record = record
        self._exc = exc

    def __repr__(self) -> str:
        return f"<EagerResult {self.id} {self.status}>"

    def _fetch(self) -> ResultRecord | None:
        return self._record

    def _exception(self, record: ResultRecord) -> BaseException:
        return self._exc if self._exc is not None else super()._exception(record)

    def _assert_will_not_block(self) -> None:
        """The run already happened: nothing to wait for."""

    def _wait(self, timeout: float | None, interval: float) -> ResultRecord:
        record = self._record
        if record is None:  # ignore_result and it succeeded: nothing was kept
            return ResultRecord(self.id, states.SUCCESS, "")
        if not record.terminal:
            raise self._timeout(record, timeout)
        return record

    def _poll(
        self, timeout: float | None, interval: float, on_message: Callable[[dict[str, Any]], Any] | None = None
    ) -> ResultRecord:
        record = self._wait(timeout, interval)
        if on_message is not None:
            on_message(self._meta(record))
        return record

    def forget(self) -> None:
        self._record = None
