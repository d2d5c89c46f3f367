"""The executor: the ONLY place task code runs.

``execute(delivery) -> Outcome``. It decodes and checks the envelope, validates arguments, runs
the task, writes the result, and decides what happens to the message. Runtimes (the worker, the
Lambda handler, the push handler) only translate the Outcome into broker calls or HTTP answers.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
import socket
import time
import traceback as tb
from collections.abc import Coroutine, Generator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..canvas.builtins import builtin
from ..canvas.followups import (
    children_id,
    expects_followups,
    fail_rest_of_chain,
    followups_on_failure,
    followups_on_success,
)
from ..envelope import SCHEDULE_HEADER, Envelope, decode, peek_id
from ..errors import (
    BackendUnavailable,
    CloudqError,
    InvalidArguments,
    MalformedMessage,
    MaxRetriesExceededError,
    NotSerializable,
    Reject,
    ResultTooLarge,
    Retry,
    SignatureInvalid,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    UnknownTask,
    WorkerLost,
)
from ..interfaces import LINEAGE_FIELDS, Delivery, OutgoingMessage, ResultRecord, ResultWriter
from ..observability import tracing
from ..results import exception_name, read_many
from ..retry import deliveries_allowed
from ..task import ExceptionInfo, Request, Task, current_request
from ..validation import to_json_value
from .decoded import take as take_envelope
from .nodename import node_name
from .result_batch import BatchedResults
from .timelimit import soft_limited, soft_time_limit, time_limit

if TYPE_CHECKING:
    import asyncio

    from ..app import App
    from ..canvas.signature import Signature

log = logging.getLogger("cloudq.task")


Followups = tuple[tuple[str, OutgoingMessage], ...]  # (queue, message) sent before the ack


@dataclass(frozen=True, slots=True)
class Ack:
    """Done: delete the message, after sending ``followups`` (the next chain step, links) and
    recording that ``step`` sent them (``cloudq/canvas/followups.py``)."""

    event: str = "succeeded"
    followups: Followups = ()
    step: str | None = None  # the task id whose ``children`` record is written once they are sent


@dataclass(frozen=True, slots=True)
class RetryIn:
    """Make the same message receivable again after ``delay_s``."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Requeue:
    """Send ``message`` to the same queue, then delete the delivered one.

    Used where the broker cannot hold the message (delays beyond its lease or delay limits)
    or cannot count deliveries; the new envelope carries the attempts spent so far.
    """

    message: OutgoingMessage
    event: str = "deferred"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Failed for good: dead-letter the message with ``reason``, after sending ``followups`` (errbacks)."""

    reason: str
    followups: Followups = ()


Outcome = Ack | RetryIn | Requeue | DeadLetter


@dataclass(frozen=True)
class Call:
    """The task body's call, where ``Executor.begin`` suspends a run."""

    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    request: Request


Steps = Generator[Call, Any, Outcome]  # a run that may stop at its Call for the value (or the error)


class Suspended:
    """A run stopped at its task's call (``Executor.begin``). ``resume`` finishes it, in any
    thread, with the call's value or exception: every step runs in the run's own context, so
    ``task.request`` and result_extended hold across threads."""

    __slots__ = ("_context", "_executor", "_steps", "call", "delivery", "env")

    def __init__(
        self, executor: Executor, delivery: Delivery, env: Envelope, steps: Steps, context: contextvars.Context
    ) -> None:
        self._executor, self.delivery, self.env, self._steps, self._context = executor, delivery, env, steps, context
        self.call: Call = context.run(steps.send, None)  # StopIteration: the run ended before its call

    def coroutine(self) -> Coroutine[Any, Any, Any]:
        """The call as a coroutine for a running loop (an ``async def`` task)."""
        return self._executor.coroutine(self.call)

    def call_here(self) -> Outcome:
        """Make the call in this thread (a sync task), then finish."""
        try:
            value = self._context.run(self._executor.call, self.call)
        except BaseException as exc:
            return self.resume(None, exc)
        return self.resume(value, None)

    def resume(self, value: Any, error: BaseException | None) -> Outcome:
        try:
            if error is None:
                self._context.run(self._steps.send, value)
            else:
                self._context.run(self._steps.throw, error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return self._executor.internal_error(self.delivery, exc, self.env)
        return self._executor.internal_error(self.delivery, RuntimeError("a run called its task twice"), self.env)


async def _with_request(coro: Any, request: Request) -> Any:
    """Run ``coro`` with ``task.request`` set: a coroutine on another thread's loop has its own context."""
    token = current_request.set(request)
    try:
        return await coro
    finally:
        current_request.reset(token)


async def _limited(coro: Any, limit: float | None) -> Any:
    """A TimeoutError out of an async task reads as its hard time limit, as in ``Executor._call``."""
    try:
        return await coro
    except TimeoutError:
        raise TimeLimitExceeded(f"task exceeded its time limit of {limit}s") from None


GIVE_BACK_BASE_S = 1.0
GIVE_BACK_MAX_S = 60.0
# An unreachable broker or result store is an outage, not the message's fault: at least this many
# deliveries (1 + 2 + 4 + ... capped at 60 s apart: about 6 minutes) before it is dead-lettered.
OUTAGE_DELIVERIES = 12


def _dead_reason(outcome: Outcome) -> str | None:
    return outcome.reason if isinstance(outcome, DeadLetter) else None


def give_back(delivery: Delivery, error: str) -> RetryIn:
    """cloudq itself could not run the delivery: retry after a backoff that grows with the
    delivery count. One log line; the runtime keeps going."""
    delay = min(GIVE_BACK_MAX_S, GIVE_BACK_BASE_S * 2 ** min(max(delivery.delivery_count, 1) - 1, 10))
    logging.getLogger("cloudq.worker").warning(
        "event=failed message_id=%s queue=%s attempt=%d could not run, giving it back in %.0fs: %s",
        delivery.message_id,
        delivery.queue,
        delivery.delivery_count,
        delay,
        error,
    )
    return RetryIn(delay)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def unknown_task_message(app: App, name: str) -> str:
    """Why a task name is unknown here and how to fix it: the module defining it was not imported
    by this app (Celery's "Received unregistered task")."""
    module = name.rpartition(".")[0] or name
    known = ", ".join(sorted(app.tasks)[:10]) or "none"
    return (
        f"unknown task {name!r}: the module defining it (probably {module!r}) was not imported by app "
        f"{app.name!r}. Import it where the app is defined: App({app.name!r}, include=[{module!r}]), "
        f"app.autodiscover_tasks([...]), or point -A at that module (known tasks: {known})"
    )


def _ignores(env: Envelope, task: Task[Any, Any]) -> bool:
    """This call's ``ignore_result`` (apply_async), else the task's."""
    return task.ignore_result if env.ignore_result is None else env.ignore_result


HOOKS = ("__call__", "before_start", "on_success", "on_failure", "on_retry", "after_return")
_overridden: dict[type, frozenset[str]] = {}  # task class -> the HOOKS it defines


def _overrides(task: Task[Any, Any], hook: str) -> bool:
    """Whether the task's class defines ``hook`` (the base Task's do nothing: skip the call).
    Looked up once per class: this is asked several times per run."""
    cls = type(task)
    found = _overridden.get(cls)
    if found is None:
        found = _overridden[cls] = frozenset(h for h in HOOKS if getattr(cls, h) is not getattr(Task, h))
    return hook in found


# the delivery being run: its lineage (and with Celery's result_extended its call), added to each
# record of its task it writes; from the run's start, that start too
_extended: ContextVar[dict[str, Any] | None] = ContextVar("cloudq_extended", default=None)
EXTENDED_FIELDS = ("args", "kwargs", "queue", "worker")

EAGER_QUEUE = "eager"
_EAGER_RECEIPT = object()  # marks the deliveries run_eagerly makes: request.is_eager


class Executor:
    def __init__(
        self, app: App, writer: ResultWriter | None = None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """``writer`` takes the result writes instead of the app's store (the worker batches them);
        ``loop``, a loop running in another thread, runs ``async def`` tasks (the async pool)."""
        self.app = app
        self.writer = writer
        self.loop = loop
        self.owner = _worker_id()
        self.hostname = node_name(app.settings.hostname)  # self.request.hostname (cloudq worker -n)
        self.eager_exception: BaseException | None = None  # the last eager run's failure, as raised
        self.tracing = tracing.install(app)  # None: off, no work per run (cloudq/observability/tracing.py)
        self._system: str | None = None  # the broker's messaging.system, for spans: asked once

    # -- entry points -------------------------------------------------------------------------

    def execute(self, delivery: Delivery) -> Outcome:
        """Run one delivery. Never raises (but KeyboardInterrupt): when cloudq's own machinery
        fails, e.g. the result store is unreachable, see ``internal_error``."""
        env: Envelope | None = None
        try:
            started = time.monotonic()
            decoded = self._decode(delivery)
            if not isinstance(decoded, Envelope):
                return decoded
            env = decoded
            if self.tracing is None:
                return self._run(delivery, env, started)
            traced = env
            attempt = env.retries + max(1, delivery.delivery_count)
            return self.tracing.process(
                delivery,
                env,
                attempt,
                self._system or self._messaging_system(),
                lambda: self._run(delivery, traced, started),
                _dead_reason,
            )
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return self.internal_error(delivery, exc, env)

    def begin(self, delivery: Delivery) -> Outcome | Suspended | None:
        """The async pool's entry: run up to the task's call and stop there (``Suspended``), so no
        thread waits while a coroutine runs; an Outcome when the run ended before its call (a bad
        message, an expired task...). None: run it with ``execute``, in a thread that may block
        (tracing is live: its span wraps the whole run). Never raises (but KeyboardInterrupt)."""
        env: Envelope | None = None
        try:
            if self.tracing is not None and self.tracing.live():
                return None
            started = time.monotonic()
            decoded = self._decode(delivery)
            if not isinstance(decoded, Envelope):
                return decoded
            env = decoded
            context = contextvars.copy_context()
            steps = self._suspending(delivery, env, started)
            try:
                return Suspended(self, delivery, env, steps, context)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return self.internal_error(delivery, exc, env)

    def _messaging_system(self) -> str:
        self._system = tracing.messaging_system(self.app.broker)
        return self._system

    def _run(self, delivery: Delivery, env: Envelope, started: float) -> Outcome:
        """Run with what each record of this task carries from the envelope: its lineage always
        (Celery keeps ``parent_id``/``group_id`` in every result), the call with ``result_extended``."""
        with self._recording(env, delivery):
            try:
                self._execute(delivery, env, started, False).send(None)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        raise RuntimeError("a run stopped at its call without being suspended")

    def _suspending(self, delivery: Delivery, env: Envelope, started: float) -> Steps:
        """``_run`` for ``begin``: stops at the task's call, recording as ``_run`` does throughout."""
        with self._recording(env, delivery):
            return (yield from self._execute(delivery, env, started, True))

    @contextlib.contextmanager
    def _recording(self, env: Envelope, delivery: Delivery) -> Iterator[None]:
        """Records of ``env``'s task written inside carry what the envelope says (``_set``)."""
        call: dict[str, Any] = {
            "task_id": env.id,
            "sent_at": env.sent_at,
            "parent_id": env.parent_id,
            "root_id": env.root_id,
            "group_id": env.group,
        }
        if self.app.settings.result_extended:
            call.update(args=env.args, kwargs=env.kwargs, queue=delivery.queue, worker=self.hostname)
        token = _extended.set(call)
        try:
            yield
        finally:
            _extended.reset(token)

    def internal_error(self, delivery: Delivery, exc: BaseException, env: Envelope | None = None) -> Outcome:
        """cloudq itself failed on ``delivery`` (not the task): give it back with a backoff while it
        has deliveries left (the task's ``max_retries + 1``, the app's default for an unknown task),
        then dead-letter it as InternalError with the traceback. Every give-back counts a delivery,
        so no message loops forever; an outage (BackendUnavailable) gets at least OUTAGE_DELIVERIES,
        so a short one does not dead-letter healthy tasks."""
        if env is None:
            env = self._peek_envelope(delivery)
        task = self.app.tasks.get(env.task) if env is not None else None
        allowed = deliveries_allowed(task.retry_policy.max_retries if task else self.app.settings.max_retries)
        if isinstance(exc, BackendUnavailable):
            allowed = max(allowed, OUTAGE_DELIVERIES)
        attempt = (env.retries if env is not None else 0) + max(1, delivery.delivery_count)
        error = f"{type(exc).__name__}: {exc}"
        if attempt < allowed:
            return self._give_back(delivery, env, attempt, error)
        trace = "".join(tb.format_exception(exc))
        message = f"{error} (cloudq failed on delivery {attempt} of {allowed})"
        if env is not None:
            failure = ResultRecord(
                env.id,
                states.FAILURE,
                task.name if task else env.task,
                error_type="cloudq.errors.InternalError",
                error_message=message,
                traceback=trace,
                attempts=attempt,
                finished_at=time.time(),
            )
            with self._recording(env, delivery):
                self._record_anyway(failure, env)
        log.error("dead-lettered message %s from %s: InternalError: %s", delivery.message_id, delivery.queue, message)
        return DeadLetter(f"InternalError: {message}\n{trace}")

    def _give_back(self, delivery: Delivery, env: Envelope | None, attempt: int, error: str) -> Outcome:
        """A broker that counts deliveries counts this one; on one that does not, the attempt is
        carried in a re-sent envelope (when it can be built)."""
        outcome = give_back(delivery, error)
        if env is None or (self.app.broker.limits.counts_deliveries and delivery.delivery_count > 0):
            return outcome
        try:
            again = env.model_copy(update={"retries": attempt, "eta": time.time() + outcome.delay_s})
            return Requeue(self._message(again, outcome.delay_s, delivery), event="retried")
        except Exception:
            return outcome

    def _peek_envelope(self, delivery: Delivery) -> Envelope | None:
        try:
            return take_envelope(delivery, self.app.signing_key) if delivery.malformed is None else None
        except Exception:
            return None

    def _decode(self, delivery: Delivery) -> Envelope | Outcome:
        """The delivery's envelope, or the dead letter of a message that has none."""
        if delivery.malformed is not None:
            return self._reject(delivery, None, f"MalformedMessage: {delivery.malformed}", record=False)
        try:
            return take_envelope(delivery, self.app.signing_key)  # the revoke check's, else decoded now
        except SignatureInvalid as exc:
            return self._reject(delivery, None, f"SignatureInvalid: {exc}", record=False)
        except MalformedMessage as exc:
            return self._reject(delivery, peek_id(delivery.body), f"{type(exc).__name__}: {exc}", exc=exc)

    def _execute(self, delivery: Delivery, env: Envelope, started: float, suspend: bool) -> Steps:
        """One run as a generator: ``suspend`` stops it at the task's call (yields the Call and
        is resumed with its value or exception); otherwise it makes the call itself."""
        task = self.app.tasks.get(env.task) or builtin(self.app, env.task)
        if task is None:
            unknown = UnknownTask(unknown_task_message(self.app, env.task))
            return self._reject(delivery, env.id, f"UnknownTask: {unknown}", env=env, exc=unknown)
        now = time.time()
        if env.eta is not None and env.eta > now:
            return self._defer(delivery, env, env.eta - now)
        if env.expires is not None and env.expires < now:
            # Celery: an expired task is revoked, never run; .get() raises TaskRevokedError
            self._write_error(
                env,
                task,
                states.REVOKED,
                "cloudq.errors.TaskRevokedError",
                f"expired at {env.expires:.3f} before it ran",
                None,
                0,
            )
            self._log("expired", env, delivery, 0, started)
            revoked = self._request(env, task, delivery, env.retries + max(1, delivery.delivery_count))
            signals.task_revoked.send(task, request=revoked, terminated=False, signum=None, expired=True)
            self._revoke_rest_of_chain(env, "expired")
            return Ack("expired")
        attempt = env.retries + max(1, delivery.delivery_count)
        policy = task.retry_policy
        allowed = deliveries_allowed(policy.max_retries)
        # max_retries=None: every retry is a new message, so only this message's deliveries count
        runs = delivery.delivery_count if policy.max_retries is None else attempt
        if runs > allowed:
            # delivered again after the last allowed attempt: the worker running it was lost
            message = (
                f"delivery {runs} exceeds the {allowed} allowed (max_retries={policy.max_retries}); "
                "an earlier delivery was never acknowledged"
            )
            self._write_failure(env, task, "cloudq.errors.WorkerLost", message, None, attempt - 1)
            return self._dead(delivery, env, attempt, f"WorkerLost: {message}", started, task, WorkerLost(message))
        try:
            call_args, call_kwargs = task.validator.to_call(env.args, env.kwargs)
        except InvalidArguments as exc:
            self._write_failure(env, task, "cloudq.errors.InvalidArguments", str(exc), None, attempt)
            return self._dead(delivery, env, attempt, f"InvalidArguments: {exc}", started, task, exc)
        if task.idempotent or SCHEDULE_HEADER in env.headers:  # a periodic run's id is its slot: run it once
            claimed = self._claim(env, task, delivery)
            if claimed is not None:
                return claimed
        elif task.track_started and not _ignores(env, task):
            self._write(ResultRecord(env.id, states.STARTED, task.name, attempts=attempt, started_at=now))
        call = _extended.get()
        if call is not None and call["task_id"] == env.id:  # every record from now on: this run's start
            call["started_at"] = now
        self._log("started", env, delivery, attempt, started)
        request = self._request(env, task, delivery, attempt)
        if signals.task_prerun.connected:
            signals.task_prerun.send(task, task_id=env.id, task=task, args=env.args, kwargs=env.kwargs)
        if _overrides(task, "before_start"):
            self._hook(request, task.before_start, env.id, env.args, env.kwargs)
        try:
            if suspend:
                value = yield Call(task, call_args, call_kwargs, request)
            else:
                value = self._call(task, call_args, call_kwargs, request)
            if request.pending_retry:  # task.retry(throw=False): the retry stands, the value is dropped
                raise request.pending_retry[-1]
            chained = expects_followups(env)
            ignored = _ignores(env, task)
            # a chain step passes its value on even when its result is not stored (Celery)
            result = to_json_value(value, f"result of {task.name}") if chained or not ignored else None
        except Reject as exc:
            self._write_failure(env, task, "cloudq.errors.Reject", exc.reason, tb.format_exc(), attempt)
            self._after_failure(task, request, exc, tb.format_exc())
            return self._dead(delivery, env, attempt, f"Reject: {exc.reason}", started, task, exc, request)
        except NotSerializable as exc:
            self._write_failure(env, task, "cloudq.errors.NotSerializable", str(exc), tb.format_exc(), attempt)
            self._after_failure(task, request, exc, tb.format_exc())
            return self._dead(delivery, env, attempt, f"NotSerializable: {exc}", started, task, exc, request)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            return self._failed(delivery, env, task, attempt, exc, started, request)
        written = True
        if not ignored:
            try:
                written = self._write(
                    ResultRecord(
                        env.id,
                        states.SUCCESS,
                        task.name,
                        result=result,
                        attempts=attempt,
                        started_at=now,
                        finished_at=time.time(),
                        expires_at=self._expiry(),
                    ),
                    direct=chained,
                    env=env,
                )
            except ResultTooLarge as exc:  # retrying cannot shrink it: record why, keep the message
                self._write_failure(env, task, "cloudq.errors.ResultTooLarge", str(exc), None, attempt)
                self._after_failure(task, request, exc, "".join(tb.format_exception(exc)))
                return self._dead(delivery, env, attempt, f"ResultTooLarge: {exc}", started, task, exc, request)
        self._log("succeeded", env, delivery, attempt, started)
        if _overrides(task, "on_success"):
            self._hook(request, task.on_success, value, env.id, env.args, env.kwargs)
        if signals.task_success.connected:
            signals.task_success.send(task, result=value)
        self._after_return(task, request, states.SUCCESS, value, None)
        if chained:
            return self._succeeded_with_followups(env, result, written)
        return Ack()

    def revoked(
        self, delivery: Delivery, record: ResultRecord, terminated: bool = False, signum: int | None = None
    ) -> Outcome:
        """A revoked task: found REVOKED before it ran, or killed running (``terminated``). Acked,
        never run (again); ``task_revoked`` fires; the REVOKED record is the revoker's and stays."""
        env = self._peek_envelope(delivery)
        task = self.app.tasks.get(env.task) if env is not None else None
        attempt = (env.retries if env is not None else 0) + max(1, delivery.delivery_count)
        log.info(
            "event=revoked task_id=%s task=%s queue=%s attempt=%d terminated=%s: %s",
            record.task_id,
            env.task if env is not None else "?",
            delivery.queue,
            attempt,
            terminated,
            record.error_message,
        )
        if env is not None and task is not None:
            request = self._request(env, task, delivery, attempt)
            signals.task_revoked.send(task, request=request, terminated=terminated, signum=signum, expired=False)
        if env is not None:
            self._revoke_rest_of_chain(env, "was revoked")
            if env.chord is not None:
                from ..canvas.chord import on_header_done

                # the revoker wrote the REVOKED record, so no result write counts this header task:
                # count it here (a redelivery counting it again only makes the chord check its
                # records early: they, not the count, decide) so the chord ends with ChordError
                on_header_done(self.app, env, written=True)
        return Ack("revoked")

    def _revoke_rest_of_chain(self, env: Envelope, why: str) -> None:
        """A chain step that will never run: the steps after it will not either, so they are
        recorded REVOKED (waiting on them raises, never hangs)."""
        if not env.chain:
            return
        record = ResultRecord(
            env.id,
            states.REVOKED,
            env.task,
            error_type="cloudq.errors.TaskRevokedError",
            error_message=f"not run: step {env.task}[{env.id}] of its chain {why}",
            finished_at=time.time(),
            expires_at=self._expiry(),
        )
        fail_rest_of_chain(env, self.writer or self.app.results, record)

    def _succeeded_with_followups(self, env: Envelope, result: Any, written: bool) -> Outcome:
        """The Ack of a successful step carrying what it sends next. ``written`` False: the SUCCESS
        record already existed, so this is a redelivery of a step that ran before: send nothing if
        its follow-ups were recorded as sent, else those of the STORED result (the first run's)."""
        if not written:
            store, ids = self.app.results, [children_id(env.id), env.id]
            found = read_many(
                store, ids, runtime=True
            )  # one request where the store can (BatchGetItem, get_all, one query)
            if ids[0] in found:
                log.info("duplicate %s %s: its follow-ups were already sent", env.task, env.id)
                return Ack("duplicate")
            stored = found.get(env.id)
            if stored is None or stored.state != states.SUCCESS:
                return Ack("duplicate")
            result = stored.result
        return Ack(followups=self._encode_followups(env, followups_on_success(self.app, env, result)), step=env.id)

    def _encode_followups(self, env: Envelope, calls: list[Signature]) -> Followups:
        """The messages of ``calls``; a call that cannot be sent (its task refuses the arguments,
        a bad option) is recorded as FAILED with the reason, and the chain steps after it too."""
        messages: list[tuple[str, OutgoingMessage]] = []
        for call in calls:
            try:
                messages.extend(self.app.messages_for([call]))
            except CloudqError as exc:
                log.error(
                    "task %s[%s]: cannot send its follow-up %r: %s: %s", env.task, env.id, call, type(exc).__name__, exc
                )
                failure = ResultRecord(
                    call.id or "",
                    states.FAILURE,
                    call.task,
                    error_type=exception_name(exc),
                    error_message=f"not sent after {env.task}[{env.id}]: {exc}",
                    finished_at=time.time(),
                    expires_at=self._expiry(),
                )
                if call.id:
                    self._record_anyway(failure)
                rest = call.options.get("chain")
                if rest:
                    fail_rest_of_chain(env.model_copy(update={"chain": rest}), self.writer or self.app.results, failure)
        return tuple(messages)

    def lost(self, delivery: Delivery, reason: str, timed_out: bool = False) -> Outcome:
        """The process running ``delivery`` died, or was killed at its hard time limit: decide what
        happens next as if the task had raised WorkerLost / TimeLimitExceeded. Runs no task code."""
        try:
            env = decode(delivery.body, self.app.signing_key)
        except MalformedMessage as bad:
            return DeadLetter(f"{type(bad).__name__}: {bad}")
        task = self.app.tasks.get(env.task) or builtin(self.app, env.task)
        if task is None:
            return DeadLetter(f"UnknownTask: {unknown_task_message(self.app, env.task)}")
        attempt = env.retries + max(1, delivery.delivery_count)
        error: BaseException = TimeLimitExceeded(reason) if timed_out else WorkerLost(reason)
        with self._recording(env, delivery):
            return self._failed(delivery, env, task, attempt, error, time.monotonic())

    def run_eagerly(self, body: bytes, revoked: ResultRecord | None = None) -> Outcome:
        """Eager mode: run a just-sent task in this thread through the same path as a worker; a
        retry runs at once (as in Celery). ``eager_exception`` keeps the failure, as raised.
        ``revoked``: the task's REVOKED record, found before the run: it does not run."""
        count = 0
        self.eager_exception = None
        if revoked is not None:
            return self.revoked(Delivery(body, _EAGER_RECEIPT, 1, EAGER_QUEUE), revoked)
        while True:
            count += 1
            outcome = self.execute(Delivery(body, _EAGER_RECEIPT, count, EAGER_QUEUE))
            if isinstance(outcome, RetryIn):
                continue
            if isinstance(outcome, Requeue):
                body, count = outcome.message.body, 0
                continue
            return outcome

    # -- helpers --------------------------------------------------------------------------------

    def call(self, call: Call) -> Any:
        """Make a suspended run's call in this thread (a sync task's body, or a coroutine run to
        its end the way ``execute`` runs it)."""
        return self._call(call.task, call.args, call.kwargs, call.request)

    def coroutine(self, call: Call) -> Coroutine[Any, Any, Any]:
        """An ``async def`` task's call as one coroutine, for a loop that is running: its time
        limits applied, ``task.request`` set, a hard limit raised as TimeLimitExceeded."""
        task, args = call.task, call.args
        if _overrides(task, "__call__"):
            body: Any = task
        else:
            body = task.fn
            if task.bind:
                args = [task, *args]
        token = current_request.set(call.request)
        try:
            coro = body(*args, **call.kwargs)
        finally:
            current_request.reset(token)
        if task.soft_time_limit:
            coro = soft_limited(coro, task.soft_time_limit)
        if task.time_limit:
            import asyncio  # the async pool has loaded it already

            coro = asyncio.wait_for(coro, task.time_limit)
        return _limited(_with_request(coro, call.request), task.time_limit)

    def _call(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], request: Request) -> Any:
        token = current_request.set(request)
        try:
            body: Any = task.fn
            if _overrides(task, "__call__"):  # a base class wrapping the body: Celery calls it then
                body = task
            elif task.bind:
                args = [task, *args]
            if not (task.is_async or task.time_limit or task.soft_time_limit):
                return body(*args, **kwargs)
            if task.is_async:
                import asyncio  # loaded by the first async task: a sync-only function never pays for it

                coro = body(*args, **kwargs)
                if task.soft_time_limit:
                    coro = soft_limited(coro, task.soft_time_limit)
                if task.time_limit:
                    coro = asyncio.wait_for(coro, task.time_limit)
                try:
                    if self.loop is None:
                        return asyncio.run(coro)
                    # the async pool: every slot's coroutine shares one running loop
                    return asyncio.run_coroutine_threadsafe(_with_request(coro, request), self.loop).result()
                except TimeoutError:
                    raise TimeLimitExceeded(f"task exceeded its time limit of {task.time_limit}s") from None
            with time_limit(task.time_limit), soft_time_limit(task.soft_time_limit):
                return body(*args, **kwargs)
        finally:
            current_request.reset(token)

    # -- hooks and signals -----------------------------------------------------------------------

    def _request(self, env: Envelope, task: Task[Any, Any], delivery: Delivery, attempt: int) -> Request:
        """``self.request`` of this delivery, Celery's fields."""
        return Request(
            env.id,
            task.name,
            attempt,
            attempt - 1,
            delivery.queue,
            env.eta,
            env.headers,
            delivery.receipt is _EAGER_RECEIPT,
            args=env.args,
            kwargs=env.kwargs,
            expires=env.expires,
            hostname=self.hostname,
            redelivered=delivery.delivery_count > 1,
            root_id=env.root_id or env.id,
            parent_id=env.parent_id,
            group=env.group,
            timelimit=(task.time_limit, task.soft_time_limit),
        )

    def _hook(self, request: Request, hook: Any, *args: Any) -> None:
        """Run one of the task's handlers with ``self.request`` set; one that raises is logged and
        the task's outcome stands."""
        token = current_request.set(request)
        try:
            hook(*args)
        except Exception as exc:
            log.exception(
                "task %s[%s]: %s raised %s: %s (the task's outcome stands)",
                request.task,
                request.id,
                getattr(hook, "__name__", hook),
                type(exc).__name__,
                exc,
            )
        finally:
            current_request.reset(token)

    def _after_return(
        self, task: Task[Any, Any], request: Request, state: str, retval: Any, einfo: ExceptionInfo | None
    ) -> None:
        if _overrides(task, "after_return"):
            self._hook(request, task.after_return, state, retval, request.id, request.args, request.kwargs, einfo)
        if not signals.task_postrun.connected:
            return
        signals.task_postrun.send(
            task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            retval=retval,
            state=state,
        )

    def _after_failure(self, task: Task[Any, Any], request: Request, exc: BaseException, trace: str) -> None:
        einfo = ExceptionInfo(exc, trace)
        if _overrides(task, "on_failure"):
            self._hook(request, task.on_failure, exc, request.id, request.args, request.kwargs, einfo)
        signals.task_failure.send(
            task,
            task_id=request.id,
            exception=exc,
            args=request.args,
            kwargs=request.kwargs,
            traceback=exc.__traceback__,
            einfo=einfo,
        )
        self._after_return(task, request, states.FAILURE, exc, einfo)

    def _after_retry(self, task: Task[Any, Any], request: Request, exc: BaseException, trace: str) -> None:
        einfo = ExceptionInfo(exc, trace)
        if _overrides(task, "on_retry"):
            self._hook(request, task.on_retry, exc, request.id, request.args, request.kwargs, einfo)
        signals.task_retry.send(task, request=request, reason=exc, einfo=einfo)
        self._after_return(task, request, states.RETRY, exc, einfo)

    def _failed(
        self,
        delivery: Delivery,
        env: Envelope,
        task: Task[Any, Any],
        attempt: int,
        exc: BaseException,
        started: float,
        request: Request | None = None,
    ) -> Outcome:
        """Celery's rules: retry a ``Retry`` or an ``autoretry_for`` exception while retries are
        left; a lost worker's delivery runs again within the task's deliveries whatever
        ``retry_on`` says; anything else fails at once."""
        if isinstance(exc, TimeLimitExceeded) and not str(exc):
            exc = TimeLimitExceeded(f"task exceeded its time limit of {task.time_limit}s")
        if isinstance(exc, SoftTimeLimitExceeded) and not str(exc):
            exc = SoftTimeLimitExceeded(f"task exceeded its soft time limit of {task.soft_time_limit}s")
        policy = task.retry_policy
        if isinstance(exc, WorkerLost):  # not a retry: run it again while it has deliveries left
            delay: float | None = 0.0 if attempt < deliveries_allowed(policy.max_retries) else None
        else:
            delay = policy.next_delay(attempt, exc)
        cause: BaseException = exc.exc if isinstance(exc, Retry) and exc.exc is not None else exc
        if isinstance(exc, Retry) and exc.exc is None and delay is None:
            limit = exc.max_retries if exc.max_retries is not None else policy.max_retries
            cause = MaxRetriesExceededError(f"Can't retry {task.name}[{env.id}]: max_retries={limit} spent")
        error_type, message = exception_name(cause), str(cause)
        trace = "".join(tb.format_exception(cause))
        if delay is None:
            if delivery.receipt is _EAGER_RECEIPT:
                self.eager_exception = cause
            self._write_failure(env, task, error_type, message, trace, attempt)
            if isinstance(cause, task.throws):  # Celery's throws: expected, logged without a traceback
                log.info("task %s[%s] raised expected: %s: %s", task.name, env.id, error_type, message)
            elif request is not None:
                log.error("task %s[%s] raised unexpected: %s: %s\n%s", task.name, env.id, error_type, message, trace)
            if request is not None:
                self._after_failure(task, request, cause, trace)
            if isinstance(exc, WorkerLost):
                why = "deliveries spent"
            elif isinstance(exc, Retry) or policy.autoretries(exc):
                why = "retries exhausted"
            else:
                why = "not retryable"
            return self._dead(
                delivery,
                env,
                attempt,
                f"{error_type}: {message} ({why} after attempt {attempt})",
                started,
                task,
                cause,
                request,
            )
        self._write_error(env, task, states.RETRY, error_type, message, trace, attempt)
        if request is not None:
            self._after_retry(task, request, cause, trace)
        self._log("retried", env, delivery, attempt, started, error=f"{error_type}: {message}", delay=round(delay, 3))
        update: dict[str, Any] = {"retries": attempt, "eta": time.time() + delay if delay else None}
        queue = delivery.queue
        if isinstance(exc, Retry):
            if exc.args_override is not None or exc.kwargs_override is not None:
                new_args, new_kwargs = task.validator.to_message(
                    env.args if exc.args_override is None else exc.args_override,
                    env.kwargs if exc.kwargs_override is None else exc.kwargs_override,
                )
                update.update(args=new_args, kwargs=new_kwargs)
            if exc.queue and delivery.receipt is not _EAGER_RECEIPT:
                queue = exc.queue
        limits = self.app.broker.limits
        same_message = "args" not in update and queue == delivery.queue and policy.max_retries is not None
        # delivery_count 0: this delivery was not counted (e.g. a push without deliveryAttempt)
        if same_message and limits.counts_deliveries and delivery.delivery_count > 0 and delay <= limits.max_lease_s:
            return RetryIn(delay)
        again = env.model_copy(update=update)
        message_out = self._message(again, delay, delivery)
        if queue != delivery.queue:  # sent first, then acked: at-least-once holds
            max_delay = limits.max_delay_s  # the envelope's eta defers the rest
            if max_delay is not None and message_out.delay_s > max_delay:
                message_out = dataclasses.replace(message_out, delay_s=max_delay)
            self.app.broker.send(queue, [message_out])
            return Ack("retried")
        return Requeue(message_out, event="retried")

    def _defer(self, delivery: Delivery, env: Envelope, remaining: float) -> Outcome:
        """Not yet due: send it on again for the rest of its delay, without spending an attempt."""
        max_delay = self.app.broker.limits.max_delay_s
        hop = remaining if max_delay is None else min(remaining, max_delay)
        return Requeue(self._message(env, hop, delivery))

    def _message(self, env: Envelope, delay: float, delivery: Delivery) -> OutgoingMessage:
        return OutgoingMessage(
            body=env.encode(self.app.signing_key),
            delay_s=delay,
            ordering_key=delivery.ordering_key,
            dedup_id=f"{env.id}:{env.retries}:{int(env.eta or 0)}",
            attributes={"task": env.task},
        )

    def _claim(self, env: Envelope, task: Task[Any, Any], delivery: Delivery) -> Outcome | None:
        """Idempotent tasks and periodic runs: claim the id before running; a duplicate of a
        finished or running task does not run again. The owner is this worker's delivery, so two
        copies of one id received by the same worker are duplicates too; a redelivery of the same
        message may take its claim over."""
        lease = task.time_limit or self.app.settings.visibility_timeout
        owner = f"{self.owner}/{delivery.message_id}" if delivery.message_id else self.owner
        claim = self.app.results.claim(env.id, owner, time.time() + lease + 5, task.name)
        if claim.acquired:
            return None
        record = claim.record
        if record is not None and record.terminal:
            log.info("duplicate %s %s skipped: already %s", task.name, env.id, record.state)
            if expects_followups(env):  # its follow-ups may not have gone out: send them if not
                return self._succeeded_with_followups(env, None, written=False)
            return Ack("duplicate")
        wait = max(1.0, (record.claim_until or time.time()) - time.time()) if record else 1.0
        return RetryIn(min(wait, self.app.broker.limits.max_lease_s))

    def _reject(
        self,
        delivery: Delivery,
        task_id: str | None,
        reason: str,
        *,
        env: Envelope | None = None,
        exc: BaseException | None = None,
        record: bool = True,
    ) -> Outcome:
        if record and task_id and exc is not None:  # bad input: retrying cannot fix it, the record is a courtesy
            self._record_anyway(
                ResultRecord(
                    task_id,
                    states.FAILURE,
                    env.task if env else "",
                    error_type=exception_name(exc),
                    error_message=str(exc),
                    attempts=delivery.delivery_count,
                    finished_at=time.time(),
                    expires_at=self._expiry(),
                ),
                env,
            )
        log.warning("dead-lettered message %s from %s: %s", delivery.message_id or task_id, delivery.queue, reason)
        return DeadLetter(reason)

    def _record_anyway(self, record: ResultRecord, env: Envelope | None = None) -> None:
        """Write the FAILURE of a message being dead-lettered; if the store refuses it (unreachable,
        or a value it cannot hold), log that and go on: the dead letter keeps the reason."""
        try:
            self._write(record, env=env)
        except Exception as exc:
            logging.getLogger("cloudq.worker").error(
                "could not record the failure of task %s, dead-lettering it anyway: %s: %s",
                record.task_id,
                type(exc).__name__,
                exc,
            )

    def _dead(
        self,
        delivery: Delivery,
        env: Envelope,
        attempt: int,
        reason: str,
        started: float,
        task: Task[Any, Any] | None = None,
        exc: BaseException | None = None,
        request: Request | None = None,
    ) -> Outcome:
        """Failed for good: the chain steps after it fail too, its errbacks fire (sent with the
        dead letter, or called here when they take ``(request, exc, traceback)``)."""
        self._log("dead-lettered", env, delivery, attempt, started, error=reason)
        if exc is None or task is None or not (env.chain or env.errbacks):
            return DeadLetter(reason)
        trace = "".join(tb.format_exception(exc))
        if env.chain:
            failure = ResultRecord(
                env.id,
                states.FAILURE,
                env.task,
                error_type=exception_name(exc),
                error_message=str(exc),
                traceback=trace,
                finished_at=time.time(),
                expires_at=self._expiry(),
            )
            try:
                fail_rest_of_chain(env, self.writer or self.app.results, failure)
            except Exception as error:
                log.error("task %s[%s]: could not fail the rest of its chain: %s", env.task, env.id, error)
        if not env.errbacks:
            return DeadLetter(reason)
        request = request or self._request(env, task, delivery, attempt)
        calls = followups_on_failure(self.app, env, request, exc, trace)
        return DeadLetter(reason, self._encode_followups(env, calls))

    def _write_failure(
        self, env: Envelope, task: Task[Any, Any], error_type: str, message: str, trace: str | None, attempt: int
    ) -> None:
        self._write_error(env, task, states.FAILURE, error_type, message, trace, attempt)

    def _write_error(
        self,
        env: Envelope,
        task: Task[Any, Any],
        state: str,
        error_type: str,
        message: str,
        trace: str | None,
        attempt: int,
    ) -> None:
        """A RETRY or FAILURE record; failures are written even for ignore_result tasks."""
        final = state != states.RETRY
        record = ResultRecord(
            env.id,
            state,
            task.name,
            error_type=error_type,
            error_message=message,
            traceback=trace,
            attempts=attempt,
            finished_at=time.time() if final else None,
            expires_at=self._expiry(),
        )
        if final or not _ignores(env, task):
            self._write(record, env=env)

    def _write(self, record: ResultRecord, direct: bool = False, env: Envelope | None = None) -> bool:
        """Callers decide whether to write (``ignore_result`` tasks still record failures).
        ``direct``: past the worker's batch, so the answer says whether a terminal record
        already existed (a chain step needs it to tell a redelivery). Whether it was written.
        With ``result_extended`` the record keeps the call; a store that cannot hold its
        arguments (ResultTooLarge) gets the record without them, and says so in the log.
        A chord header task's end (``env.chord``) is always written directly, then counted
        toward its chord (``cloudq/canvas/chord.py``)."""
        if record.expires_at is None:
            record.expires_at = self._expiry()
        header = env is not None and env.chord is not None and record.terminal
        writer = self.writer or self.app.results
        if (direct or header) and isinstance(writer, BatchedResults):
            writer = self.app.results
        written = self._set(writer, record)
        if header:
            from ..canvas.chord import on_header_done  # imported for chord header tasks only

            assert env is not None
            on_header_done(self.app, env, written)
        return written

    def _set(self, writer: ResultWriter, record: ResultRecord) -> bool:
        call = _extended.get()
        if call is None or call["task_id"] != record.task_id:
            return writer.set(record)
        lineage = dataclasses.replace(record, **{name: call[name] for name in LINEAGE_FIELDS})
        if lineage.started_at is None:  # a retry's or failure's record: when its run started
            lineage.started_at = call.get("started_at")
        if "args" not in call:
            return writer.set(lineage)
        try:
            return writer.set(dataclasses.replace(lineage, **{name: call[name] for name in EXTENDED_FIELDS}))
        except ResultTooLarge as exc:
            log.warning(
                "task %s[%s]: its arguments are kept out of its record: %s", record.task_name, record.task_id, exc
            )
            return writer.set(lineage)

    def _expiry(self) -> float | None:
        keep = self.app.settings.result_expires
        return time.time() + keep if keep else None

    def _log(self, event: str, env: Envelope, delivery: Delivery, attempt: int, started: float, **extra: Any) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        fields = {
            "event": event,
            "task_id": env.id,
            "task": env.task,
            "queue": delivery.queue,
            "attempt": attempt,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
            **extra,
        }
        log.info(" ".join(f"{k}={v}" for k, v in fields.items()))


class EagerWriter:
    """Keeps the records of eager runs (``task.apply()``), forwarding them to ``store`` if given."""

    def __init__(self, store: ResultWriter | None = None) -> None:
        self.store = store
        self.records: dict[str, ResultRecord] = {}

    def set(self, record: ResultRecord) -> bool:
        self.records[record.task_id] = record
        return self.store.set(record) if self.store is not None else True
