"""What a task page shows beyond the record's fields: the timeline of its states and its canvas
links (parent, root, the tasks it sent next, the group or chord it belongs to with its progress).

Everything comes from records the store already has, read in batches (``read_many``: one
BatchGetItem, Firestore ``get_all`` or SQL query each): the task's record with its ``children``
record, then the records it links to, then a saved group's members. A lone task costs one
request, a chain step two, a group or chord member three (one more per 100 members past the
first 100, up to ``MEMBERS_COUNTED``).

The timeline is built from one record, which keeps the latest state only: it shows when the task
was sent, when its latest attempt started and how it ended, and says what it cannot show (the
times and errors of earlier attempts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import states
from ..canvas.followups import children_id, sent_ids
from ..canvas.results import chord_body_id, member_ids
from ..interfaces import ResultRecord, ResultStore
from ..results import read_many

MEMBERS_COUNTED = 1000  # a group's members read for its progress (past it, the count says so)
MEMBERS_SHOWN = 50  # members listed on the page
CHILDREN_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Event:
    what: str
    at: float | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Link:
    """Another task's place on this one's page: its id, and its name and state when it has a record."""

    role: str
    task_id: str
    task_name: str = ""
    state: str = states.PENDING


@dataclass(frozen=True, slots=True)
class Progress:
    """The group (or chord header) a task belongs to. ``size`` is None when the group was not
    saved (a plain group is saved only by ``GroupResult.save()``; a chord's header always is)."""

    group_id: str
    kind: str  # "group" or "chord"
    size: int | None = None
    counted: int = 0  # members whose records were read (at most MEMBERS_COUNTED)
    ended: int = 0
    succeeded: int = 0
    failed: int = 0  # FAILURE or REVOKED
    members: list[Link] = field(default_factory=list)
    body: Link | None = None


@dataclass(frozen=True, slots=True)
class TaskView:
    record: ResultRecord | None
    timeline: list[Event]
    untold: list[str]  # what the timeline cannot show
    parent: Link | None = None
    root: Link | None = None
    children: list[Link] = field(default_factory=list)
    group: Progress | None = None


def _link(role: str, task_id: str, records: dict[str, ResultRecord]) -> Link:
    found = records.get(task_id)
    return Link(role, task_id, found.task_name, found.state) if found is not None else Link(role, task_id)


def timeline(record: ResultRecord | None) -> tuple[list[Event], list[str]]:
    """The events the record tells, oldest first, and what it cannot tell."""
    if record is None:
        return [], ["no record yet: a queued task has none until a worker writes one (Celery's PENDING)"]
    events: list[Event] = []
    untold: list[str] = []
    if record.sent_at is not None:
        events.append(Event("sent", record.sent_at))
    else:
        untold.append("when it was sent: the record was not written by a worker running it")
    if record.started_at is not None:
        waited = f"waited {record.started_at - record.sent_at:.3f} s" if record.sent_at is not None else ""
        attempt = f" (attempt {record.attempts})" if record.attempts else ""
        events.append(Event(f"received and started{attempt}", record.started_at, waited))
    if record.attempts > 1:
        untold.append(
            f"the {record.attempts - 1} earlier attempt(s) that were retried: the record keeps the latest "
            "state only, so their times and errors are not kept"
        )
    error = record.error_type or ""  # its message is shown (scrubbed of argument values) above
    if record.state == states.RETRY:
        events.append(Event("RETRY", None, f"attempt {record.attempts} failed, it runs again later; {error}"))
    elif record.terminal:
        ran = ""
        if record.started_at is not None and record.finished_at is not None:
            ran = f"ran {record.finished_at - record.started_at:.3f} s"
        events.append(Event(record.state, record.finished_at, "; ".join(x for x in (ran, error) if x)))
    return events, untold


def _progress(
    group_id: str, saved: ResultRecord | None, store: ResultStore, records: dict[str, ResultRecord]
) -> Progress:
    ids = member_ids(saved)
    body = chord_body_id(saved)
    kind = "chord" if body is not None else "group"
    if ids is None:
        return Progress(group_id, kind)
    counted = ids[:MEMBERS_COUNTED]
    wanted = [i for i in (*counted, *([body] if body else [])) if i not in records]
    found = {**records, **read_many(store, wanted)} if wanted else records
    ended = [found[i] for i in counted if i in found and found[i].terminal]
    return Progress(
        group_id,
        kind,
        size=len(ids),
        counted=len(counted),
        ended=len(ended),
        succeeded=sum(1 for r in ended if r.state == states.SUCCESS),
        failed=sum(1 for r in ended if r.state != states.SUCCESS),
        members=[_link(f"member {n}", i, found) for n, i in enumerate(ids[:MEMBERS_SHOWN], 1)],
        body=_link("chord body", body, found) if body else None,
    )


def read(store: ResultStore, task_id: str) -> TaskView:
    """The view of ``task_id``, in as few batched reads as its links need (see the module's doc)."""
    first = read_many(store, [task_id, children_id(task_id)])
    record = first.get(task_id)
    events, untold = timeline(record)
    if record is None:
        return TaskView(None, events, untold)
    child_ids = sent_ids(first.get(children_id(task_id)))[:CHILDREN_SHOWN]
    own_members = member_ids(record)  # the page of a saved group (or chord header) itself
    group_id = task_id if own_members is not None else record.group_id
    linked = [i for i in (record.parent_id, record.root_id, group_id, *child_ids) if i and i != task_id]
    records = read_many(store, list(dict.fromkeys(linked))) if linked else {}
    if own_members is not None:
        records[task_id] = record
    root = record.root_id if record.root_id not in (None, task_id, record.parent_id) else None
    return TaskView(
        record,
        events,
        untold,
        parent=_link("parent", record.parent_id, records) if record.parent_id else None,
        root=_link("root", root, records) if root else None,
        children=[_link("sent next", i, records) for i in child_ids],
        group=_progress(group_id, records.get(group_id), store, records) if group_id else None,
    )
