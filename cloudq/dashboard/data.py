"""The dashboard's reads of the backends, through the cache: queue counts (Broker.stats), dead
letters (Broker.dead_letters), recent tasks (TaskIndex) and workers (HeartbeatStore); a task's
record with its canvas links is read fresh (``taskview``). A capability the store lacks reads as
None, and its page says so. Each queue-count and worker read is also kept for the queues page's
charts (``charts.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import deadletters as dl
from ..interfaces import DeadLetterAdmin, Heartbeat, HeartbeatStore, QueueStats, TaskIndex, TaskSummary
from ..runtime.series import Series
from . import taskview
from .cache import TTLCache
from .charts import DepthHistory, SeriesMemory
from .redact import Argument, arguments, hidden_values, scrub
from .taskview import TaskView

if TYPE_CHECKING:
    from ..app import App

DEAD_LETTERS_SHOWN = 100  # per queue page: the first this many dead letters are read and listed
RECENT_SHOWN = 100


@dataclass(frozen=True, slots=True)
class LetterRow:
    message_id: str
    task_id: str
    task: str
    error_type: str
    reason: str
    dead_at: str | None
    retries: Any


class Backends:
    """Cached reads of one app's backends (``ttl_s`` seconds per page and queue)."""

    def __init__(self, app: App, ttl_s: float, clock: Callable[[], float] | None = None) -> None:
        self.app = app
        self.cache = TTLCache(ttl_s, clock) if clock is not None else TTLCache(ttl_s)
        self.depths = DepthHistory()
        self.seen = SeriesMemory()

    def queues(self) -> list[str]:
        return self.app.queues()

    def stats(self) -> list[QueueStats]:
        return list(self.cache.get("stats", self._read_stats))

    def _read_stats(self) -> list[QueueStats]:
        found = [self.app.broker.stats(q) for q in self.queues()]
        self.depths.add(found, time.time())
        return found

    @property
    def can_redrive(self) -> bool:
        return isinstance(self.app.broker, DeadLetterAdmin)

    def _letters(self, queue: str) -> list[Any]:
        return list(self.cache.get(("dead", queue), lambda: self.app.broker.dead_letters(queue, DEAD_LETTERS_SHOWN)))

    def dead_letters(self, queue: str, selection: dl.Selection) -> list[LetterRow]:
        """The dead letters as listed: no body, so no argument value reaches the page."""
        rows = []
        for letter in self._letters(queue):
            if not selection.matches(letter):
                continue
            shown = dl.describe(letter)
            body = shown["body"] if isinstance(shown["body"], dict) else {}
            _, hidden = self.shown(shown["task"] or "", body.get("args"), body.get("kwargs"))
            rows.append(
                LetterRow(
                    letter.message_id,
                    shown["task_id"] or "",
                    shown["task"] or "",
                    shown["error_type"] or "",
                    scrub(letter.reason, hidden) or "",
                    shown["dead_at"],
                    shown["retries"],
                )
            )
        return rows

    def chosen_letters(self, queue: str, chosen: dl.Selection) -> list[Any]:
        """The letters an action acts on, read fresh (not from the cache): ticked ids among the
        listed ones, or every match among the first ``dl.SCAN_LIMIT`` (as the CLI's ``--all``)."""
        return dl.select(self.app, queue, chosen, DEAD_LETTERS_SHOWN if chosen.ids is not None else dl.SCAN_LIMIT)

    def recent(self) -> list[TaskSummary] | None:
        store = self.app.results
        if not isinstance(store, TaskIndex):
            return None
        return list(self.cache.get("recent", lambda: store.recent(limit=RECENT_SHOWN)))

    def workers(self) -> list[Heartbeat] | None:
        store = self.app.results
        if not isinstance(store, HeartbeatStore):
            return None
        return sorted(self.cache.get("workers", lambda: self._read_workers(store)), key=lambda beat: beat.worker_id)

    def _read_workers(self, store: HeartbeatStore) -> list[Heartbeat]:
        found = store.alive()
        self.seen.update(found)
        return found

    def series(self, now: float) -> Series | None:
        """The workers' series of the last hour added up (reading the workers through the cache),
        None when the store keeps no presence records."""
        if self.workers() is None:
            return None
        return self.seen.merged(now)

    def task(self, task_id: str) -> TaskView:
        """The task's record with its timeline and canvas links (read fresh: a page of one task)."""
        return taskview.read(self.app.results, task_id)

    def shown(self, task_name: str, args: Any, kwargs: Any) -> tuple[list[Argument], list[str]]:
        """The arguments as a page shows them, and the hidden values to scrub from error text."""
        args = args if isinstance(args, list) else []
        kwargs = kwargs if isinstance(kwargs, dict) else {}
        task = self.app.tasks.get(task_name)
        fn = task.fn if task is not None else None
        bound = bool(task.bind) if task is not None else False
        shown = arguments(args, kwargs, self.app.settings.dashboard_redact, fn, bound)
        return shown, hidden_values(args, kwargs, shown)
