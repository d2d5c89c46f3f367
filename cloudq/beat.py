"""``cloudq beat``: send each periodic task's due runs, safely from any number of replicas.

Each run slot (entry name + due time) is claimed in the result store before it is sent, with the
store's conditional ``claim`` (DynamoDB conditional update, SQLite insert in a transaction,
Firestore transaction): one replica wins, the others see the claim and move on. The winner sends
the run with the slot's task id, then marks the slot done (a terminal record nobody can claim
again) and moves the entry's last-run marker on. Duplicates: a beat that dies between its send and
the done mark leaves a claim that lapses after ``CLAIM_S``; a replica still behind that slot
sends it again with the same task id, and the worker runs it once (``SCHEDULE_HEADER``).

Requests per slot: the winner makes 3 writes (claim, done, marker) and 1 send; each other replica
1 conditional write. Markers are read once, when a beat starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import states
from .interfaces import ManyReader, ResultRecord
from .periodic import DUE_HEADER, SCHEDULE_HEADER, PeriodicTask
from .schedules import iso

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("cloudq.beat")

SLOT_PREFIX = "cloudq-beat-slot:"  # + task id: the claim of one run
MARKER_PREFIX = "cloudq-beat-last:"  # + entry name: the latest run sent
CLAIM_S = 60.0  # a claimed slot whose beat died is free again after this
SLOT_TTL_S = 7 * 86400.0  # done slots are kept this long (a beat never looks back past its marker)
MAX_CATCH_UP = 1000  # missed="all" sends at most this many runs of one entry at once
LATE_AFTER_S = 60.0  # missed="skip": a run reached later than this after its due time counts as missed


@dataclass(frozen=True, slots=True)
class Sent:
    """One run this beat sent."""

    entry: str
    due: float
    task_id: str


def slot_key(task_id: str) -> str:
    return SLOT_PREFIX + task_id


def marker_key(name: str) -> str:
    return MARKER_PREFIX + name


def last_runs(app: App, names: Sequence[str]) -> dict[str, float]:
    """The due time of the latest run sent of each entry that has one (one batched read when the
    store can)."""
    store = app.results
    keys = [marker_key(n) for n in names]
    if isinstance(store, ManyReader):
        records = store.get_many(keys)
    else:
        records = {k: r for k in keys if (r := store.get(k)) is not None}
    out: dict[str, float] = {}
    for name, key in zip(names, keys, strict=True):
        record = records.get(key)
        due = record.result.get("due") if record and isinstance(record.result, dict) else None
        if isinstance(due, (int, float)):
            out[name] = float(due)
    return out


def due_slots(item: PeriodicTask, after: float, now: float, late_after_s: float = LATE_AFTER_S) -> list[float]:
    """The runs of ``item`` due in (``after``, ``now``] that its ``missed`` policy sends."""
    slots: list[float] = []
    when = item.schedule.next_after(after)
    while when <= now:
        slots.append(when)
        if len(slots) > MAX_CATCH_UP:
            slots.pop(0)
        when = item.schedule.next_after(when)
    if not slots:
        return []
    if item.missed == "all":
        if len(slots) == MAX_CATCH_UP and slots[0] > after:
            log.warning("periodic task %s: catching up on the latest %d missed runs only", item.name, MAX_CATCH_UP)
        return slots
    latest = slots[-1]
    if item.missed == "skip" and now - latest > late_after_s:
        return []
    return [latest]


class Beat:
    """The scheduler loop. ``clock`` (epoch seconds) is injectable; ``tick`` does one pass and
    returns the seconds until the next due run, so tests drive it without waiting."""

    def __init__(
        self,
        app: App,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        late_after_s: float = LATE_AFTER_S,
        max_sleep_s: float = 1.0,
    ) -> None:
        self.app = app
        self.clock = clock
        self.owner = owner or f"beat-{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.late_after_s = late_after_s
        self.max_sleep_s = max_sleep_s
        self.entries = app.periodic_tasks
        self._cursor: dict[str, float] | None = None
        self.sent: list[Sent] = []
        log.info("beat %s: %d periodic task(s): %s", self.owner, len(self.entries), ", ".join(self.entries))

    def _start(self, now: float) -> dict[str, float]:
        """Where each entry's runs resume: after its last run sent by any beat, else from now."""
        found = last_runs(self.app, list(self.entries))
        return {name: found.get(name, now) for name in self.entries}

    def tick(self) -> float:
        """Claim and send every due run once; seconds until the next one is due."""
        now = self.clock()
        if self._cursor is None:
            self._cursor = self._start(now)
        cursor = self._cursor
        won: list[tuple[PeriodicTask, float]] = []
        until = time.time() + CLAIM_S  # the store's own clock times claims out, not the injected one
        for name, item in self.entries.items():
            held: list[float] = []
            for due in due_slots(item, cursor[name], now, self.late_after_s):
                claim = self.app.results.claim(slot_key(item.task_id(due)), self.owner, until, item.task)
                if claim.acquired:
                    won.append((item, due))
                elif claim.record is not None and not claim.record.terminal:
                    held.append(due)  # another beat is sending it: look again until it is done
            cursor[name] = min(held) - 1e-6 if held else max(cursor[name], _latest_due(item, now))
        if won:
            self._send(won, now)
        upcoming = min((item.schedule.next_after(now) for item in self.entries.values()), default=now + 60.0)
        return max(0.0, upcoming - self.clock())

    def _send(self, won: list[tuple[PeriodicTask, float]], now: float) -> None:
        from .canvas.signature import Signature

        calls = []
        for item, due in won:
            task = self.app.tasks[item.task]
            headers = {**(item.options.get("headers") or {}), SCHEDULE_HEADER: item.name, DUE_HEADER: iso(due)}
            options = {**item.options, "task_id": item.task_id(due), "headers": headers}
            calls.append(Signature(task, item.args, item.kwargs, options))
        try:
            self.app.send_many(calls)
        except Exception:
            log.exception("beat could not send %d periodic run(s); they are retried on the next tick", len(won))
            for item, due in won:
                self.app.results.forget(slot_key(item.task_id(due)))
                self._cursor[item.name] = min(self._cursor[item.name], due - 1e-6)  # type: ignore[index]
            return
        latest: dict[str, float] = {}
        for item, due in won:
            task_id = item.task_id(due)
            self.app.results.set(
                ResultRecord(
                    slot_key(task_id),
                    states.SUCCESS,
                    item.task,
                    result={"task_id": task_id, "due": due, "sent_at": now, "by": self.owner},
                    finished_at=now,
                    expires_at=max(due, time.time()) + SLOT_TTL_S,
                )
            )
            latest[item.name] = max(latest.get(item.name, due), due)
            self.sent.append(Sent(item.name, due, task_id))
            log.info("sent periodic %s (%s) due %s as %s", item.name, item.task, iso(due), task_id)
        for name, due in latest.items():
            record = ResultRecord(marker_key(name), states.STARTED, result={"due": due, "sent_at": now})
            self.app.results.set(record)

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set; a failing backend is logged and tried again."""
        while not stop.is_set():
            try:
                wait = self.tick()
            except Exception:
                log.exception("beat tick failed; trying again")
                wait = self.max_sleep_s
            stop.wait(min(wait, self.max_sleep_s))


def _latest_due(item: PeriodicTask, now: float) -> float:
    """A point at or after the latest due time <= ``now`` and before the next one."""
    return min(now, item.schedule.next_after(now) - 1e-6)


def run_in_thread(app: App, stop: threading.Event, **options: Any) -> threading.Thread:
    """``cloudq worker --beat``: the beat beside the worker, in a daemon thread."""
    beat = Beat(app, **options)
    thread = threading.Thread(target=beat.run, args=(stop,), name="cloudq-beat", daemon=True)
    thread.start()
    return thread
