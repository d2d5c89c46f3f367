"""chord: a group whose results go to one body task, sent exactly once when the last header task
ends (Celery's ``chord``) — counted in the result store, with no worker waiting and no lock.

The protocol, per header task (its envelope's ``chord`` part says which chord and where):

1. The executor writes the task's terminal record (success, failure, revoked) straight to the
   store, never batched; the write is conditional, so only the first delivery to end the task
   writes it (``set`` -> True).
2. That delivery, and only it, adds 1 to the chord's counter (``AtomicCounter.increment``:
   DynamoDB ``UpdateItem ADD``, Firestore ``Increment``, SQL ``... RETURNING``). Two increments
   never return the same value, so one delivery sees ``size``: the last to count.
3. A delivery that sees ``size`` or more (an increment whose response was lost and that the SDK
   retried counts twice, so the count can reach it early) reads the header's records in one
   batched read (``get_many``); when every task has ended it claims the chord's marker record
   (``claim``) and sends the body with the results in header order — or, when
   a header task failed, fails the body with ChordError and fires its ``link_error``s (the body
   never runs, Celery's semantics) — then marks the marker done. All before the header message
   is acknowledged.

Cost: ONE request per header task beyond running it (the increment); per chord: the saved
header ids (1 write), the marker's read, claim and done (3), the saved ids' read and the
header's (1 + 1 per 100 tasks), the body's send and the counter's delete (1 each).

The crash window: a worker that dies after step 1 and before step 2 leaves the counter one
short. The redelivery closes it: a delivery whose terminal write is refused (the task had
already ended) cannot know whether its count was lost, so it checks the header itself — if
every task has ended it completes the chord (step 3), else it sends a ``cloudq.chord_unlock``
task that polls until they have (Celery's own fallback, also what a store without counters
uses). The marker's claim lets only one of the counter's completion and these checks send the
body, and its done mark stops later ones; a delivery that died holding the claim is finished by
its own redelivery (same owner). A duplicate body message remains possible only when a worker
dies after sending the body and before marking it done (or two copies of that one header
message run at the same moment); the copy carries the same task id, so an ``idempotent=True``
body runs once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .. import states
from ..errors import ChordError, InvalidOptions
from ..interfaces import AtomicCounter, ResultRecord
from ..results import AsyncResult, read_many
from .builtins import CHORD_UNLOCK, UNLOCK_FIRST_S, builtin
from .chain import chain
from .group import group
from .results import GroupResult
from .signature import Signature, from_dict

if TYPE_CHECKING:
    from ..app import App
    from ..envelope import ChordPart, Envelope

log = logging.getLogger("cloudq.canvas")

CHORD_TASK = "celery.chord"  # Celery's name for the composite
CHORD_TASK_NAME = "cloudq.chord"  # the task_name of a chord's marker record
COUNTER_PREFIX = "chord:"
DEFAULT_KEEP_S = 86400.0  # how long a counter lives when results never expire


# -- the producer side ---------------------------------------------------------------------------


class chord(Signature):  # noqa: N801 - Celery's name
    """``chord(header)(body)`` / ``chord(header, body).apply_async()``: run the header's
    signatures in parallel, then ``body`` once with the list of their results in header order.
    Returns the body's AsyncResult; its ``parent`` is the header's GroupResult (saved under the
    chord's id, so ``GroupResult.restore`` finds it). ``link``/``link_error`` go to the body."""

    __slots__ = ()

    def __init__(
        self, header: Any, body: Signature | dict[str, Any] | None = None, app: App | None = None, **options: Any
    ):
        if isinstance(header, dict):
            header = from_dict(header, app)
        if not isinstance(header, group):
            header = group(header, app=app)
        if isinstance(body, dict):
            body = from_dict(body, app)
        bound = app or header.bound_app or (body.bound_app if body is not None else None)
        super().__init__(CHORD_TASK, (), {"header": header, "body": body}, options, subtask_type="chord", app=bound)

    @property
    def header(self) -> group:
        header: group = self.kwargs["header"]
        return header

    @property
    def body(self) -> Signature | None:
        body: Signature | None = self.kwargs["body"]
        return body

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def clone(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        """A copy; partial arguments go to every header task (Celery)."""
        body = options.pop("body", None) or self.body
        return chord(
            self.header.clone(args, kwargs),
            body.clone() if body is not None else None,
            app=self._app,
            **{**self.options, **options},
        )

    def link(self, callback: Signature) -> Signature:
        return self._body("link").link(callback)

    def link_error(self, errback: Signature) -> Signature:
        return self._body("link_error").link_error(errback)

    on_error = link_error

    def _body(self, what: str) -> Signature:
        if self.body is None:
            raise InvalidOptions(f"chord.{what}: the chord has no body yet (chord(header, body))")
        return self.body

    def __call__(self, body: Signature | None = None, **options: Any) -> AsyncResult:  # type: ignore[override]
        """``chord(header)(body)``: send it."""
        return self.apply_async(body=body, **options)

    def apply_async(  # type: ignore[override]
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        route_name: str | None = None,
        body: Signature | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the header (batched); ``args``/``kwargs`` are prepended to every header task;
        ``task_id`` is the body's id, ``group_id`` the header's."""
        sig = self.clone(args, kwargs, body=body, **options)
        result: AsyncResult = self.app.send_many([sig])[0]
        return result

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult:
        """The body's id (and every header task's) assigned now; the body's result, whose
        ``parent`` is the header's GroupResult."""
        body = self._body("freeze")
        header = self.header.freeze(self.options.get("group_id"))
        result = body.freeze(_id or self.options.get("task_id"))
        self.options["task_id"] = result.id
        self.options["group_id"] = header.id
        result.parent = header  # type: ignore[assignment]
        return result

    def expand(self) -> tuple[list[Signature], Any]:
        """The header tasks to send now (each carrying its chord part and the body) and the
        body's result. The header's ids are saved first (one write): the chord's end reads them."""
        app = self.app
        body = self._body("apply_async").clone()
        if self.options.get("chain"):  # a chord inside a chain: the body carries the rest
            body.options["chain"] = list(self.options["chain"])
        shared = {k: v for k, v in self.options.items() if k not in ("task_id", "group_id", "chain") and v is not None}
        sending = chord(self.header.clone(), body, app=app, **self.options)
        result = sending.freeze()
        header = sending.header
        if not header.tasks:  # Celery: an empty header calls the body at once with []
            return body.clone(([],)).expand()[0], result
        for member in header.tasks:
            if member.subtask_type not in (None, "chain"):
                raise InvalidOptions(
                    f"chord header task {member!r}: a {member.subtask_type} in a chord header is not supported yet"
                )
        saved = result.parent
        assert isinstance(saved, GroupResult)
        saved.save(chord_body=result.id)
        counter = f"{COUNTER_PREFIX}{saved.id}" if isinstance(app.results, AtomicCounter) else None
        part: dict[str, Any] = {"id": saved.id, "size": len(header.tasks), "body": body.to_dict()}
        if counter is not None:
            part["counter"] = counter
        calls: list[Signature] = []
        for index, member in enumerate(header.tasks):
            # a header's result is kept whatever its task says: the body needs it
            mark = {"chord": {**part, "index": index}, "ignore_result": False}
            if isinstance(member, chain):  # a chain in the header: its LAST step counts
                member = member.clone(**shared)
                member.tasks[-1].options.update(mark)  # type: ignore[attr-defined]
                calls.extend(member.expand()[0])
            else:
                calls.append(member.clone(**mark, **shared))
        if counter is None:  # no counter in this store: poll (Celery's chord_unlock)
            calls.append(unlock_signature(app, {**part, "index": 0}))
        return calls, result

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        body = self.body
        data["kwargs"] = {
            "header": [member.to_dict() for member in self.header.tasks],
            "body": body.to_dict() if body is not None else None,
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: App | None = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        header, body = kwargs.get("header"), kwargs.get("body")
        if not isinstance(header, list) or not isinstance(body, (dict, type(None))):
            raise InvalidOptions(f"chord signature without kwargs.header/body: {data!r:.80}")
        options = dict(data.get("options") or {})
        return chord([from_dict(task, app) for task in header], body, app=app, **options)


Signature.TYPES["chord"] = chord


def unlock_signature(app: App, part: dict[str, Any]) -> Signature:
    builtin(app, CHORD_UNLOCK)  # registered here too, so the send checks its arguments
    return Signature(CHORD_UNLOCK, (), {"chord": part}, {"countdown": UNLOCK_FIRST_S}, app=app)


def send_unlock(app: App, part: dict[str, Any]) -> None:
    app.send_many([unlock_signature(app, part)])


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
        # the count can pass the size early (a retried increment counts twice): the records decide
        if store.increment(part.counter, 1, _expiry(app)) >= part.size:
            settle_if_ready(app, part, owner=env.id)
        return
    if not settle_if_ready(app, part, owner=env.id):
        send_unlock(app, part.model_dump(exclude_none=True))


def settle_if_ready(app: App, part: ChordPart, owner: str) -> bool | None:
    """Complete the chord if every header task has ended: True when it is complete (now or
    before), False while some have not ended, None when the saved header is gone."""
    store = app.results
    held = store.get(_marker_id(part))
    if held is not None and held.terminal:
        return True  # the body was sent (or failed) already
    saved = GroupResult.restore(part.id, app=app)
    if saved is None:
        return None
    records = read_many(store, [r.id for r in saved.results])
    if not all(r.id in records and records[r.id].terminal for r in saved.results):
        return False
    complete(app, part, owner, [records[r.id] for r in saved.results])
    return True


def complete(app: App, part: ChordPart, owner: str, records: list[ResultRecord]) -> None:
    """Every header task has ended (``records``, in header order): send the body with their
    results (or fail it), once."""
    store = app.results
    body = from_dict(part.body, app)
    marker = _marker_id(part)
    lease = app.settings.visibility_timeout + 5
    if not store.claim(marker, owner, time.time() + lease, CHORD_TASK_NAME).acquired:
        return  # sent already, or being sent by another delivery (whose redelivery finishes it)
    failed = next((r for r in records if r.state != states.SUCCESS), None)
    if failed is None:  # the body's parent is the task that completed the chord (its record says so)
        app.send_many([body.clone(([r.result for r in records],), parent_id=owner)])
    else:
        _fail_body(app, body, failed, owner)
    now = time.time()  # sent: no later check sends it again
    done = {"owner": owner, "body": body.id}
    store.set(
        ResultRecord(marker, states.SUCCESS, CHORD_TASK_NAME, result=done, finished_at=now, expires_at=_expiry(app))
    )
    if part.counter is not None and isinstance(store, AtomicCounter):
        store.delete_counter(part.counter)


def _fail_body(app: App, body: Signature, failed: ResultRecord, owner: str) -> None:
    """Celery's chord error: the body's record says which header task failed; its link_errors run."""
    from ..task import Request
    from .followups import takes_request

    body_id = body.id or ""
    message = f"Dependency {failed.task_id} raised {failed.error_type}: {failed.error_message}"
    now = time.time()
    keep = app.settings.result_expires
    app.results.set(
        ResultRecord(
            body_id,
            states.FAILURE,
            body.task,
            error_type="cloudq.errors.ChordError",
            error_message=message,
            finished_at=now,
            expires_at=now + keep if keep else None,
            parent_id=owner,
        )
    )
    log.warning("chord body %s[%s] failed: %s", body.task, body_id, message)
    calls: list[Signature] = []
    for errback in body.options.get("link_error") or ():
        sig = errback if isinstance(errback, Signature) else from_dict(errback, app)
        task = app.tasks.get(sig.task) if sig.subtask_type is None else None
        if task is not None and takes_request(task):  # called here, as a failed task's errback is
            try:
                sig(Request(body_id, body.task, 0, 0, ""), ChordError(message), None)
            except Exception as error:
                log.exception(
                    "errback %s of chord body %s raised %s: %s", sig.task, body_id, type(error).__name__, error
                )
        else:
            calls.append(sig.clone((body_id,)))
    if calls:
        app.send_many(calls)


def _marker_id(part: ChordPart) -> str:
    return f"{part.id}:body"


def _expiry(app: App) -> float:
    return time.time() + (app.settings.result_expires or DEFAULT_KEEP_S)
