"""chord: a group whose results go to one body task, sent exactly once when the last header task
ends (Celery's ``chord``) — counted in the result store, with no worker waiting and no lock.

The protocol, per header task (its envelope's ``chord`` part says which chord and where):

1. The executor writes the task's terminal record straight to the store (not batched), a
   conditional write: only the first delivery to end the task writes it (``set`` -> True).
2. That delivery, and only it, adds 1 to the chord's counter (``AtomicCounter.increment``:
   DynamoDB ``UpdateItem ADD``, Firestore ``Increment``, SQL ``UPDATE ... RETURNING``). Two
   increments never return the same value, so exactly one sees ``size``.
3. The one that sees ``size`` takes the body with a conditional marker record, reads the header's
   records in one batched read (``get_many``) and sends the body with the results in header order
   — or, when a header task failed, fails the body with ChordError and sends its ``link_error``s
   (the body never runs, Celery's semantics). The body goes out before the header message is
   acknowledged.

Cost per header task: ONE request beyond running a task (the increment); per chord: the saved
header (1 write), the marker (1), the header read (1 per 100 tasks), the body send, the counter
delete.

The crash window: a worker that dies after step 1 and before step 2 leaves the counter one
short. It is closed by the redelivery: a delivery whose terminal write was refused (the task had
already ended) cannot know whether its count was lost, so it checks the header itself; if every
task has ended it completes the chord, else it sends a ``cloudq.chord_unlock`` task that polls
until they have (Celery's own fallback, also used on stores without a counter). The marker makes
the counter's completion and these checks send the body once. A duplicate body message remains
possible in one case: a worker that dies after sending the body and before acknowledging the
message that sent it; the copy carries the same task id, so an ``idempotent=True`` body runs once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import states
from ..errors import InvalidOptions
from ..interfaces import AtomicCounter, ResultRecord
from ..results import AsyncResult
from .builtins import CHORD_UNLOCK, UNLOCK_FIRST_S, builtin
from .group import group, with_call
from .results import GroupResult, read_many

if TYPE_CHECKING:
    from ..app import App
    from ..envelope import ChordPart, Envelope
    from ..task import Signature

log = logging.getLogger("cloudq.canvas")

CHORD_TASK_NAME = "cloudq.chord"  # the task_name of a chord's marker record
COUNTER_PREFIX = "chord:"
DEFAULT_KEEP_S = 86400.0  # how long a counter lives when results never expire


# -- signatures as JSON (the body travels in every header envelope) ------------------------------


def sig_to_dict(sig: Signature) -> dict[str, Any]:
    from ..app import to_epoch

    options = {k: v for k, v in sig.options.items() if v is not None}
    for name in ("eta", "expires"):
        if name in options:
            options[name] = to_epoch(options[name])
    return {
        "task": sig.task.name,
        "args": list(sig.args),
        "kwargs": dict(sig.kwargs),
        "options": options,
        "immutable": bool(getattr(sig, "immutable", False)),
        "subtask_type": None,
    }


def sig_from_dict(app: App, data: dict[str, Any]) -> Signature:
    from ..errors import UnknownTask
    from ..runtime.executor import unknown_task_message
    from ..task import Signature

    name = data.get("task", "")
    task = app.tasks.get(name) or builtin(app, name)
    if task is None:
        raise UnknownTask(unknown_task_message(app, name))
    return Signature(task, tuple(data.get("args", ())), dict(data.get("kwargs", {})), dict(data.get("options", {})))


# -- the producer side ---------------------------------------------------------------------------


class chord:  # noqa: N801 - Celery's name
    """``chord(header)(body)``: run the header's signatures in parallel, then ``body`` once with
    the list of their results in header order. Returns the body's AsyncResult (its ``parent``:
    the header's GroupResult, saved under the chord's id)."""

    subtask_type = "chord"

    def __init__(self, header: Iterable[Any], body: Signature | None = None, app: App | None = None, **options: Any):
        self.header = header if isinstance(header, group) else group(list(header), app=app)
        self.body = body
        self.options = options
        self.app = self.header.app

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, body: Signature | None = None, **options: Any) -> AsyncResult:
        return self.apply_async((), {}, body=body, **options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        body: Signature | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the header (batched); ``args``/``kwargs`` are prepended to every header task as a
        group's are; ``task_id`` is the body's id."""
        from ..app import new_task_id

        body = body if body is not None else self.body
        if body is None:
            raise InvalidOptions("chord(header)(body): the chord has no body")
        app = self.app
        options = {**self.options, **options}
        body_id = options.pop("task_id", None) or body.options.get("task_id") or new_task_id()
        body = with_call(body, (), {"task_id": body_id})
        header = self.header.clone()
        if not header.tasks:  # Celery: an empty header calls the body at once with []
            return app.send_many([with_call(body, ([],))])[0]
        result = header.freeze(options.pop("group_id", None))
        result.save()  # the chord's end reads the header's ids from here
        store = app.results
        counter = f"{COUNTER_PREFIX}{result.id}" if isinstance(store, AtomicCounter) else None
        part: dict[str, Any] = {"id": result.id, "size": len(header.tasks), "body": sig_to_dict(body)}
        if counter is not None:
            part["counter"] = counter
        header.tasks = [
            # a header's result is kept whatever its task says: the body needs it
            with_call(sig, (), {"chord": {**part, "index": index}, "ignore_result": False})
            for index, sig in enumerate(header.tasks)
        ]
        header.apply_async(args, kwargs, group_id=result.id, **options)
        if counter is None:  # no counter in this store: poll (Celery's chord_unlock)
            send_unlock(app, {**part, "index": 0})
        return AsyncResult(body_id, app=app)


def send_unlock(app: App, part: dict[str, Any]) -> None:
    unlock = builtin(app, CHORD_UNLOCK)
    assert unlock is not None
    unlock.apply_async((), {"chord": part}, countdown=UNLOCK_FIRST_S)


# -- the executor side ---------------------------------------------------------------------------


def on_header_done(app: App, env: Envelope, written: bool) -> None:
    """A chord header task has ended (``written``: this delivery wrote its terminal record).
    Count it, and complete the chord when it is the last; a delivery that finds the task already
    ended checks the header instead (its count may have been lost)."""
    part = env.chord
    if part is None or part.counter is None:
        return  # a chord_unlock task watches this chord
    store = app.results
    if not isinstance(store, AtomicCounter):
        raise InvalidOptions(f"chord {part.id} counts on {part.counter}, but this result store has no counters")
    if written:
        if store.increment(part.counter, 1, _expiry(app)) == part.size:
            complete(app, part, owner=env.id)
        return
    if not settle_if_ready(app, part, owner=env.id):
        send_unlock(app, part.model_dump(exclude_none=True))


def settle_if_ready(app: App, part: ChordPart, owner: str) -> bool | None:
    """Complete the chord if every header task has ended: True when it is complete (now or
    before), False while some have not ended, None when the saved header is gone."""
    store = app.results
    held = store.get(_marker_id(part))
    if held is not None and _owner(held) != owner:
        return True  # completed by someone else
    saved = GroupResult.restore(part.id, app=app)
    if saved is None:
        return None
    records = read_many(store, [r.id for r in saved.results])
    if not all(r.id in records and records[r.id].terminal for r in saved.results):
        return False
    complete(app, part, owner, [records[r.id] for r in saved.results])
    return True


def complete(app: App, part: ChordPart, owner: str, records: list[ResultRecord] | None = None) -> None:
    """Every header task has ended: send the body with their results (or fail it), once."""
    store = app.results
    body = sig_from_dict(app, part.body)
    body_id = body.options["task_id"]
    if not _take(app, part, owner, body_id):
        return
    if records is None:
        saved = GroupResult.restore(part.id, app=app)
        if saved is None:
            log.error("chord %s: its saved header is gone (expired?): the body is not sent", part.id)
            return
        found = read_many(store, [r.id for r in saved.results])
        records = [found[r.id] for r in saved.results if r.id in found]
        if len(records) != len(saved.results):
            log.error("chord %s: %d header results are gone: the body is not sent", part.id, part.size - len(records))
            return
    failed = next((r for r in records if r.state != states.SUCCESS), None)
    if failed is None:
        app.send_many([with_call(body, ([r.result for r in records],))])
    else:
        _fail_body(app, body, failed)
    if part.counter is not None and isinstance(store, AtomicCounter):
        store.delete_counter(part.counter)


def _fail_body(app: App, body: Signature, failed: ResultRecord) -> None:
    """Celery's chord error: the body's record says which header task failed; its link_errors run."""
    body_id = body.options["task_id"]
    message = f"Dependency {failed.task_id} raised {failed.error_type}: {failed.error_message}"
    now = time.time()
    keep = app.settings.result_expires
    app.results.set(
        ResultRecord(
            body_id,
            states.FAILURE,
            body.task.name,
            error_type="cloudq.errors.ChordError",
            error_message=message,
            finished_at=now,
            expires_at=now + keep if keep else None,
        )
    )
    log.warning("chord body %s[%s] failed: %s", body.task.name, body_id, message)
    errbacks = [sig_from_dict(app, eb) for eb in body.options.get("link_error") or ()]
    if errbacks:
        app.send_many([with_call(eb, (body_id,)) for eb in errbacks])


def _marker_id(part: ChordPart) -> str:
    return f"{part.id}:body"


def _owner(record: ResultRecord) -> str | None:
    return record.result.get("owner") if isinstance(record.result, dict) else None


def _take(app: App, part: ChordPart, owner: str, body_id: str) -> bool:
    """Whether ``owner`` sends the body: it wrote the marker now, or wrote it before and the body
    has no record yet (it died before sending: send again, same id)."""
    store = app.results
    now = time.time()
    marker = ResultRecord(
        _marker_id(part),
        states.SUCCESS,
        CHORD_TASK_NAME,
        result={"owner": owner, "body": body_id},
        finished_at=now,
        expires_at=_expiry(app),
    )
    if store.set(marker):
        return True
    held = store.get(marker.task_id)
    return held is not None and _owner(held) == owner and store.get(body_id) is None


def _expiry(app: App) -> float:
    return time.time() + (app.settings.result_expires or DEFAULT_KEEP_S)
