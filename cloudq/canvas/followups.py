"""What a finishing task sends next: the next chain step, its links, or its errbacks.

The executor asks here once the task's outcome is recorded and hands the messages to the
runtime's settle step inside the outcome (``Ack.followups``/``DeadLetter.followups``), which
sends them BEFORE acknowledging the task's message, then records that they were sent (the
``children`` record). Every follow-up's task id was pre-assigned when the workflow was sent, so a
re-sent follow-up carries the same id.

Under redelivery (a duplicate message, or a worker killed between the result write and the ack),
the step's conditional SUCCESS write finds the record already terminal: the executor then sends
nothing if the ``children`` record exists, else the follow-ups computed from the STORED result
(so the successor gets the first run's value). A duplicate remains possible only when a worker
dies after sending the follow-ups and before recording them; the duplicate has the same task id.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from .. import states
from ..interfaces import ManyWriter, ResultRecord, ResultWriter
from .signature import Signature, from_dict

if TYPE_CHECKING:
    from ..app import App
    from ..envelope import Envelope
    from ..task import Request, Task

log = logging.getLogger("cloudq.task")

CHILDREN_TASK = "cloudq.children"  # task name of the records saying a step's follow-ups were sent


def children_id(task_id: str) -> str:
    """The id of the record that says ``task_id``'s follow-ups were sent (its ``result`` lists them)."""
    return f"{task_id}.children"


def expects_followups(env: Envelope) -> bool:
    """Whether a successful run of ``env`` sends anything (a chain step, links). A chord header's
    count is made where its record is written (``chord.on_header_done``), on every final state."""
    return bool(env.chain or env.callbacks)


def _lineage(env: Envelope) -> dict[str, Any]:
    return {"parent_id": env.id, "root_id": env.root_id or env.id}


def followups_on_success(app: App, env: Envelope, result: Any) -> list[Signature]:
    """The calls a success of ``env`` with ``result`` (JSON) makes: the next chain step (carrying
    the rest) and each link. The result is
    prepended to each one's arguments unless it is immutable (Celery)."""
    calls: list[Signature] = []
    lineage = _lineage(env)
    if env.chain:
        steps = list(env.chain)
        step = from_dict(steps.pop(), app).clone((result,), **lineage)  # next step LAST
        if steps:
            step.options["chain"] = steps
        calls.append(step)
    for callback in env.callbacks or ():
        calls.append(from_dict(callback, app).clone((result,), **lineage))
    return calls


def takes_request(task: Task[Any, Any]) -> bool:
    """Celery calls an errback in the worker with ``(request, exc, traceback)`` when its function
    takes more than one positional argument (and is not ``bind=True``); otherwise it sends it as
    a task with the failed task's id."""
    if task.bind:
        return False
    try:
        params = inspect.signature(task.fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) > 1


def followups_on_failure(app: App, env: Envelope, request: Request, exc: BaseException, trace: str) -> list[Signature]:
    """Fire ``env``'s errbacks: those taking ``(request, exc, traceback)`` are called here, now
    (Celery's rule; ``traceback`` is the formatted text, as Celery's ``einfo.traceback``); the
    others are returned to be sent with the failed task's id prepended."""
    calls: list[Signature] = []
    for errback in env.errbacks or ():
        sig = from_dict(errback, app)
        task = app.tasks.get(sig.task) if sig.subtask_type is None else None
        if task is not None and takes_request(task):
            try:
                sig(request, exc, trace)
            except Exception as error:
                log.exception(
                    "errback %s of task %s[%s] raised %s: %s", sig.task, env.task, env.id, type(error).__name__, error
                )
            continue
        calls.append(sig.clone((env.id,), **_lineage(env)))
    return calls


def fail_rest_of_chain(env: Envelope, writer: ResultWriter, record: ResultRecord) -> None:
    """A failed chain step fails the steps that will not run (Celery 5 does the same), so waiting on
    the chain's result raises the failure instead of waiting forever."""
    for step in env.chain or ():
        task_id = (step.get("options") or {}).get("task_id")
        if isinstance(task_id, str) and task_id:
            writer.set(
                ResultRecord(
                    task_id,
                    record.state,
                    str(step.get("task") or ""),
                    error_type=record.error_type,
                    error_message=record.error_message,
                    traceback=record.traceback,
                    attempts=0,
                    finished_at=record.finished_at,
                    expires_at=record.expires_at,
                )
            )


def sent_ids(record: ResultRecord | None) -> list[str]:
    """The task ids a ``children`` record lists ([] for none, or a record that is not one)."""
    if record is None or record.task_name != CHILDREN_TASK or not isinstance(record.result, list):
        return []
    return [i for i in record.result if isinstance(i, str) and i]


def children_record(task_id: str, child_ids: list[str], expires_at: float | None) -> ResultRecord:
    return ResultRecord(
        children_id(task_id),
        states.SUCCESS,
        CHILDREN_TASK,
        result=child_ids,
        finished_at=time.time(),
        expires_at=expires_at,
    )


def record_sent(store: Any, records: list[ResultRecord]) -> None:
    """Write the ``children`` records of steps whose follow-ups were just sent (one transaction
    where the store writes many at once)."""
    if not records:
        return
    if isinstance(store, ManyWriter):
        store.set_many(records)
    else:
        for record in records:
            store.set(record)
