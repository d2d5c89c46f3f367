"""The lineage every record keeps (Celery's ``parent_id``/``group_id``, plus ``sent_at`` and
``root_id``): ``AsyncResult(id).parent`` and ``.children`` work from the records alone, without
``result_extended``, on the memory and SQLite backends with a real burst worker."""

from __future__ import annotations

from cloudq import App, AsyncResult, chain, chord, group, states
from cloudq.canvas.results import GroupResult, chord_body_id
from cloudq.interfaces import ResultRecord
from cloudq.testing.chord_contract import TOTAL, register_chord_tasks
from cloudq.testing.workers import run_burst


def test_a_chain_steps_records_name_their_parent_and_root(app: App) -> None:
    add = app.tasks["canvas.add"]
    last = chain(add.s(1, 1), add.s(2), add.s(3)).apply_async()
    first_id, middle_id = last.parent.parent.id, last.parent.id  # type: ignore[union-attr]
    run_burst(app)
    assert last.get(timeout=10) == 7
    fresh = AsyncResult(last.id, app=app)  # a handle by id: nothing but the records
    assert fresh.parent is not None and fresh.parent.id == middle_id
    assert fresh.parent.parent is not None and fresh.parent.parent.id == first_id
    assert fresh.parent.parent.parent is None, "the first step was sent from outside any task"
    record = app.results.get(last.id)
    assert record is not None and (record.parent_id, record.root_id) == (middle_id, first_id)
    assert record.sent_at is not None and record.started_at is not None and record.sent_at <= record.started_at
    assert [c.id for c in AsyncResult(first_id, app=app).children or []] == [middle_id]
    assert AsyncResult(last.id, app=app).children == [], "the last step sent nothing"


def test_a_queued_task_has_no_parent_and_no_children_yet(app: App) -> None:
    queued = AsyncResult(app.tasks["canvas.add"].delay(1, 2).id, app=app)
    assert queued.parent is None and queued.children is None


def test_a_handle_given_a_parent_keeps_it(app: App) -> None:
    given = AsyncResult("p", app=app)
    assert AsyncResult("c", app=app, parent=given).parent is given
    app.results.set(ResultRecord("c2", states.SUCCESS, "canvas.add", parent_id="someone"))
    assert AsyncResult("c2", app=app).parent == "someone"
    handle = AsyncResult("c2", app=app)
    handle.parent = None  # set explicitly, as on a chain's first step: never read from the record
    assert handle.parent is None


def test_group_and_chord_members_keep_their_group_id(app: App) -> None:
    register_chord_tasks(app)
    add, total = app.tasks["canvas.add"], app.tasks[TOTAL]
    members = group(add.s(i, i) for i in range(3)).apply_async()
    body = chord([add.s(1, 1), add.s(2, 2)], total.s()).apply_async()
    header = body.parent
    assert isinstance(header, GroupResult)
    run_burst(app)
    assert body.get(timeout=10) == 6
    for r in members.results:
        assert app.results.get(r.id).group_id == members.id  # type: ignore[union-attr]
    for r in header.results:
        assert app.results.get(r.id).group_id == header.id  # type: ignore[union-attr]
    assert chord_body_id(app.results.get(header.id)) == body.id, "the saved header names its body"
    sender = AsyncResult(body.id, app=app).parent
    assert sender is not None and sender.id in [r.id for r in header.results], "the header task that completed it"
    assert chord_body_id(app.results.get(members.id)) is None
