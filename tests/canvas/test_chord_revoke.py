"""A chord whose header task is revoked before it runs still ends: the revoked task is acked
without running, so the skip path must count it toward its chord (or the body would wait forever).
Celery: a revoked header task fails the chord."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloudq import App, chord
from cloudq.errors import ChordError
from cloudq.testing.chord_contract import BODY_RUNS, TOTAL, register_chord_tasks
from cloudq.testing.workers import run_burst


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    app = make_app()
    register_chord_tasks(app)
    BODY_RUNS.clear()
    return app


def test_a_revoked_header_task_fails_the_chord_instead_of_leaving_it_pending(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
    result = chord([add.s(i, 1) for i in range(4)], tsum.s()).apply_async()
    header = result.parent
    assert header is not None
    header.results[2].revoke()  # queued, not started: the worker skips it
    run_burst(app)
    with pytest.raises(ChordError, match="REVOKED|revoked"):
        result.get(timeout=10)
    assert [r.state for r in header.results] == ["SUCCESS", "SUCCESS", "REVOKED", "SUCCESS"]
    assert not BODY_RUNS  # the body never ran


def test_revoking_every_header_task_still_ends_the_chord(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
    result = chord([add.s(i, 1) for i in range(3)], tsum.s()).apply_async()
    assert result.parent is not None
    app.control.revoke([r.id for r in result.parent.results])
    run_burst(app)
    with pytest.raises(ChordError):
        result.get(timeout=10)
    assert not BODY_RUNS
