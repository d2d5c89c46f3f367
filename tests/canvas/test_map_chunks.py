"""task.map / starmap / chunks with Celery's meaning, on memory and SQLite with a real worker;
the old one-task-per-item fan-out is task.send_each."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloudq import App, GroupResult
from cloudq.errors import InvalidOptions
from cloudq.testing.chord_contract import register_chord_tasks
from cloudq.testing.workers import run_burst


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    app = make_app()
    register_chord_tasks(app)
    return app


def _queued(app: App) -> int:
    return app.broker.stats(app.queue_for(app.tasks["canvas.add"])).ready


def test_map_is_one_task_over_every_item(app: App) -> None:
    @app.task(name="t.double")
    def double(x: int) -> int:
        return 2 * x

    sig = double.map(range(5))
    assert sig.task == "cloudq.map"  # a signature: nothing sent yet
    result = sig.delay()
    assert _queued(app) == 1  # ONE message for the five calls
    run_burst(app)
    assert result.get(timeout=5) == [0, 2, 4, 6, 8]


def test_starmap_spreads_each_item(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = add.starmap([(2, 2), (4, 4)]).apply_async()  # Celery's guide: [4, 8]
    run_burst(app)
    assert result.get(timeout=5) == [4, 8]


def test_chunks_send_n_sized_starmaps_as_a_group(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = add.chunks(zip(range(10), range(10), strict=True), 4).apply_async()  # 4 + 4 + 2
    assert isinstance(result, GroupResult) and len(result) == 3
    assert _queued(app) == 3
    run_burst(app)
    assert result.get(timeout=5) == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]


def test_chunks_compose_as_a_group(app: App) -> None:
    add = app.tasks["canvas.add"]
    assert len(add.chunks([(1, 1)] * 5, 2).group()) == 3
    with pytest.raises(InvalidOptions, match="chunk size must be an integer >= 1"):
        add.chunks([(1, 1)], 0)


def test_send_each_keeps_the_batched_fan_out(app: App) -> None:
    handles = app.tasks["canvas.add"].send_each([(i, 1) for i in range(6)])
    assert _queued(app) == 6
    run_burst(app)
    assert [h.get(timeout=5) for h in handles] == [1, 2, 3, 4, 5, 6]
