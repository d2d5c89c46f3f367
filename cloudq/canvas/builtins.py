"""The canvas's own tasks (Celery's ``celery.map``, ``celery.starmap``, ``celery.chord_unlock``).

They are registered on an app the first time the canvas needs them there: by the producer when
it builds ``task.map``/``starmap``/``chunks`` or a chord, and by the executor when a message
names one, so a worker runs them without importing anything.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..task import Task

if TYPE_CHECKING:
    from ..app import App

MAP = "cloudq.map"
STARMAP = "cloudq.starmap"
CHORD_UNLOCK = "cloudq.chord_unlock"
NAMES = (MAP, STARMAP, CHORD_UNLOCK)
UNLOCK_FIRST_S = 1.0
UNLOCK_MAX_S = 30.0

log = logging.getLogger("cloudq.canvas")
_lock = threading.Lock()


def _task_named(app: App, sig: Any) -> Task[Any, Any]:
    from ..errors import UnknownTask

    name = sig.get("task") if isinstance(sig, dict) else sig
    task = app.tasks.get(name) if isinstance(name, str) else None
    if task is None:
        raise UnknownTask(f"{MAP}/{STARMAP}: unknown task {name!r}")
    return task


def _map(self: Task[Any, Any], task: Any, it: list[Any]) -> list[Any]:
    """Call ``task`` here on each item, in order: one message for the whole list."""
    fn = _task_named(self.app, task)
    return [fn(item) for item in it]


def _starmap(self: Task[Any, Any], task: Any, it: list[Any]) -> list[Any]:
    """Call ``task(*item)`` here on each item, in order."""
    fn = _task_named(self.app, task)
    return [fn(*item) for item in it]


def _chord_unlock(self: Task[Any, Any], chord: dict[str, Any]) -> None:
    """Poll a chord's header until every task has ended, then complete it (send the body, or
    fail it). Used where the result store has no atomic counter, and to settle a chord after a
    header task was delivered again (its count may have been lost in a crash)."""
    from ..envelope import ChordPart
    from .chord import settle_if_ready

    part = ChordPart.model_validate(chord)
    ready = settle_if_ready(self.app, part, owner=self.request.id or CHORD_UNLOCK)
    if ready is None:
        log.error("chord %s: its saved header is gone (expired?): the body is not sent", part.id)
        return
    if not ready:
        delay = min(UNLOCK_MAX_S, UNLOCK_FIRST_S * 2 ** min(self.request.retries, 5))
        raise self.retry(countdown=delay, max_retries=None)


def register(app: App) -> None:
    """Register the canvas's tasks on ``app`` (once)."""
    if CHORD_UNLOCK in app.tasks:
        return
    with _lock:
        if CHORD_UNLOCK in app.tasks:
            return
        app.task(name=MAP, bind=True, typing=False)(_map)
        app.task(name=STARMAP, bind=True, typing=False)(_starmap)
        app.task(name=CHORD_UNLOCK, bind=True, typing=False, max_retries=None)(_chord_unlock)


def builtin(app: App, name: str) -> Task[Any, Any] | None:
    """The canvas task ``name`` on ``app`` (registered now if needed), or None if it is not one."""
    if name not in NAMES:
        return None
    register(app)
    return app.tasks.get(name)
