"""What the whole canvas must do on every broker + result store pair, as a pytest class to subclass.

::

    class TestMyBackends(CanvasContract):
        @pytest.fixture
        def chord_app(self):
            app = App("x", broker=..., results=...)
            yield app
            app.close()

Chains (Celery's guide ``add.s(2, 2) | add.s(4) | add.s(8)``, immutable steps, a failing step),
``link`` / ``link_error`` callbacks and groups (order, ``GroupResult.restore``), on top of the
chord cases of ``ChordContract``. The tasks are registered on the app under ``chord_contract.``
names and run by a real burst worker in this process, so one definition runs on every backend.
"""

from __future__ import annotations

import threading

import pytest

from .. import states
from ..app import App
from ..canvas.chain import chain
from ..canvas.group import group
from ..canvas.results import GroupResult
from .chord_contract import ADD, BODY_RUNS, FAIL, ChordContract, register_chord_tasks
from .workers import run_burst

ON_ERROR, FAILED_ID = "chord_contract.on_error", "chord_contract.failed_id"
errbacks: list[tuple[str | None, str]] = []  # (failed task id, exception repr) per errback called in the worker
_lock = threading.Lock()


def register_canvas_tasks(app: App) -> None:
    """The chord contract's tasks, plus the two errback shapes Celery knows (once per app)."""
    register_chord_tasks(app)
    if ON_ERROR in app.tasks:
        return

    @app.task(name=ON_ERROR)
    def on_error(request: object, exc: BaseException, traceback: str) -> None:
        """Takes ``(request, exc, traceback)``: called in the worker, as Celery does."""
        with _lock:
            errbacks.append((getattr(request, "id", None), repr(exc)))

    @app.task(name=FAILED_ID)
    def failed_id(task_id: str) -> str:
        """Takes one argument: sent as a task with the failed task's id."""
        return f"failed:{task_id}"


class CanvasContract(ChordContract):
    """Chains, callbacks, groups and chords on one backend pair."""

    @pytest.fixture
    def app(self, chord_app: App) -> App:
        register_canvas_tasks(chord_app)
        BODY_RUNS.clear()
        errbacks.clear()
        return chord_app

    def test_the_guide_chain_prepends_each_result_and_parent_walks_back(self, app: App) -> None:
        add = app.tasks[ADD]
        result = (add.s(2, 2) | add.s(4) | add.s(8)).apply_async()
        run_burst(app)
        assert result.get(timeout=30) == 16
        assert result.parent is not None and result.parent.parent is not None
        assert [result.parent.get(timeout=10), result.parent.parent.get(timeout=10)] == [8, 4]
        assert result.parent.parent.parent is None

    def test_an_immutable_step_ignores_the_previous_result(self, app: App) -> None:
        add = app.tasks[ADD]
        result = chain(add.s(1, 1), add.si(5, 5), add.s(1)).apply_async()
        run_burst(app)
        assert result.get(timeout=30) == 11  # 5 + 5, then + 1: the 2 went nowhere
        assert result.parent is not None and result.parent.get(timeout=10) == 10

    def test_a_failing_step_fires_link_error_and_fails_the_rest(self, app: App) -> None:
        add, fail = app.tasks[ADD], app.tasks[FAIL]
        workflow = chain(add.s(1, 1), fail.s(), add.s(5))
        workflow.link_error(app.tasks[ON_ERROR].s())
        by_id = app.tasks[FAILED_ID].s()
        notified = by_id.freeze()
        workflow.link_error(by_id)
        result = workflow.apply_async()
        run_burst(app)
        failing = result.parent
        assert failing is not None and failing.state == states.FAILURE
        assert result.state == states.FAILURE  # the step that will not run is failed, not left pending
        with pytest.raises(ValueError, match="boom 2"):
            result.get(timeout=30)
        assert errbacks == [(failing.id, "ValueError('boom 2')")]
        assert notified.get(timeout=30) == f"failed:{failing.id}"

    def test_link_sends_the_callback_with_the_result_prepended(self, app: App) -> None:
        add = app.tasks[ADD]
        callback = add.s(100)
        frozen = callback.freeze()
        first = add.apply_async((1, 2), link=callback)
        run_burst(app)
        assert first.get(timeout=30) == 3 and frozen.get(timeout=30) == 103

    def test_a_group_applied_async_is_restored_by_id(self, app: App) -> None:
        add = app.tasks[ADD]
        result = group(add.s(i, 10) for i in range(6)).apply_async()
        result.save()
        run_burst(app)
        restored = GroupResult.restore(result.id, app=app)
        assert restored is not None and restored == result
        assert restored.get(timeout=30) == [10 + i for i in range(6)]
        assert restored.successful() and not restored.failed()
        restored.delete()
        assert GroupResult.restore(result.id, app=app) is None
