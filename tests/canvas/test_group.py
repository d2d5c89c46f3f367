"""group + GroupResult on memory and SQLite with a real worker: batched sends, batched reads,
Celery's ordering and propagation, save/restore."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloudq import App, GroupResult, InvalidArguments, group
from cloudq.interfaces import ManyReader
from cloudq.testing.chord_contract import TOTAL, register_chord_tasks
from cloudq.testing.workers import run_burst


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    app = make_app()
    register_chord_tasks(app)
    return app


def test_a_group_runs_in_parallel_and_lists_results_in_order(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = group(add.s(i, i) for i in range(10)).apply_async()  # Celery's guide
    assert isinstance(result, GroupResult) and len(result) == 10
    assert not result.ready() and result.completed_count() == 0
    run_burst(app)
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 10
    assert result.get(timeout=5) == [i + i for i in range(10)]
    assert result.join(timeout=5) == [i + i for i in range(10)]


def test_members_carry_the_group_id(app: App) -> None:
    seen: list[str | None] = []

    @app.task(name="t.which", bind=True)
    def which(self) -> None:
        seen.append(self.request.group)

    result = group(which.s(), which.s()).apply_async()
    run_burst(app)
    assert seen == [result.id, result.id]


def test_partial_arguments_are_prepended_to_every_member(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = group(add.s(2), add.s(4)).delay(10)  # Celery: group(...)(10) -> add(10, 2), add(10, 4)
    run_burst(app)
    assert result.get(timeout=5) == [12, 14]


def test_one_invalid_member_sends_nothing(app: App) -> None:
    add = app.tasks["canvas.add"]
    with pytest.raises(InvalidArguments):
        group(add.s(1, 2), add.s("x", 2)).apply_async()
    assert app.broker.stats(app.queue_for(add)).ready == 0


def test_a_failure_propagates_from_the_first_failed_member_in_order(app: App) -> None:
    add, boom = app.tasks["canvas.add"], app.tasks["canvas.fail"]
    result = group(add.s(1, 1), boom.s(2), boom.s(3)).apply_async()
    run_burst(app)
    assert result.ready() and result.failed() and not result.successful()
    assert result.completed_count() == 1
    with pytest.raises(ValueError, match="boom 2"):
        result.get(timeout=5)
    values = result.get(timeout=5, propagate=False)
    assert values[0] == 2 and isinstance(values[1], ValueError) and str(values[2]) == "boom 3"


def test_save_and_restore_by_id(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = group(add.s(1, 2), add.s(3, 4)).apply_async()
    result.save()
    run_burst(app)
    restored = GroupResult.restore(result.id, app=app)
    assert restored == result and restored is not None
    assert restored.get(timeout=5) == [3, 7]
    restored.delete()
    assert GroupResult.restore(result.id, app=app) is None
    assert GroupResult.restore("never-saved", app=app) is None


def test_get_times_out_naming_how_many_are_ready(app: App) -> None:
    from cloudq import ResultTimeout

    add = app.tasks["canvas.add"]
    result = group(add.s(1, 2), add.s(3, 4)).apply_async()
    with pytest.raises(ResultTimeout, match="0 of 2 tasks ready"):
        result.get(timeout=0.05)


def test_each_poll_reads_every_member_in_one_batched_read(app: App) -> None:
    store = app.results
    if not isinstance(store, ManyReader):
        pytest.skip("this store reads one record at a time (the stores branch adds get_many)")
    add = app.tasks["canvas.add"]
    result = group(add.s(i, 1) for i in range(30)).apply_async()
    run_burst(app)
    calls: list[int] = []
    get_many, get = store.get_many, store.get
    store.get_many = lambda ids: calls.append(len(ids)) or get_many(ids)  # type: ignore[method-assign]
    store.get = lambda task_id: pytest.fail("read one by one")  # type: ignore[method-assign]
    try:
        assert result.get(timeout=5) == [i + 1 for i in range(30)]
        assert result.ready()  # terminal records are kept: no read at all
    finally:
        store.get_many, store.get = get_many, get  # type: ignore[method-assign]
    assert calls == [30]


def test_eager_mode_runs_the_group_in_place() -> None:
    app = App("eager", eager=True)

    @app.task(name="t.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    assert group(mul.s(2, 3), mul.s(4, 5)).apply_async().get() == [6, 20]


def test_a_group_of_chains(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = group(add.s(1, 1) | add.s(10), add.s(2, 2) | add.s(20)).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == [12, 24]  # each chain's last result


def test_a_chain_of_groups_is_a_chord_in_between(app: App) -> None:
    """Celery's guide: a group followed by a task is a chord; a group at the end is a group."""
    from cloudq import chain

    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
    workflow = chain(add.s(1, 1), group(add.s(10), add.s(20)), tsum.s(), group(add.s(100), add.s(200)))
    result = workflow.apply_async()
    run_burst(app)
    assert isinstance(result, GroupResult)
    assert result.get(timeout=10) == [134, 234]  # 2 -> [12, 22] -> 34 -> [134, 234]


def test_send_options_apply_to_every_member(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = group(add.s(1, 1), add.s(2, 2)).apply_async(queue="side")
    assert app.broker.stats("side").ready == 2 and app.broker.stats(app.queue_for(add)).ready == 0
    run_burst(app, queues=["side"])
    assert result.get(timeout=5) == [2, 4]


def test_a_group_round_trips_through_json(app: App) -> None:
    from cloudq import signature

    add = app.tasks["canvas.add"]
    original = group(add.s(1, 1), add.s(2, 2) | add.s(3))
    rebuilt = signature(original.to_dict(), app=app)
    assert isinstance(rebuilt, group) and rebuilt.to_dict() == original.to_dict()
    result = rebuilt.apply_async()
    run_burst(app)
    assert result.get(timeout=5) == [2, 7]
