"""Periodic tasks as declared: ``@app.periodic_task``, ``app.add_periodic_task`` and Celery's
``beat_schedule`` setting, in one table of ``PeriodicTask`` entries that ``cloudq beat``,
``cloudq schedules`` and ``cloudq deploy`` all read.

A run's identity is its slot: the entry's name and due time. The task id of a run is derived from
the slot (``name@2026-01-01T09:00:00Z``), in the form EventBridge Scheduler's
``<aws.scheduler.scheduled-time>`` gives, so a run sent twice (a beat's retried send, a scheduler's
redelivery) carries the same id and the worker runs it once (``SCHEDULE_HEADER``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from .envelope import SCHEDULE_HEADER as SCHEDULE_HEADER  # re-exported: beat and deploys use it
from .errors import ConfigurationError, UnknownTask
from .schedules import Schedule, iso, to_schedule

if TYPE_CHECKING:
    from .app import App
    from .task import Task

Missed = Literal["latest", "all", "skip"]
MISSED: tuple[str, ...] = get_args(Missed)
# on a periodic run's message: the worker claims its id before running it, so a duplicate is skipped
DUE_HEADER = "cloudq-due"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # fits EventBridge and Cloud Scheduler names
ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "missed", "relative"})
# apply_async options an entry may carry: the rest (eta, countdown, task_id, ...) belong to the slot
ENTRY_OPTIONS = frozenset({"queue", "expires", "priority", "headers", "ignore_result", "ordering_key"})


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    """One schedule entry: send ``task(*args, **kwargs)`` at each due time of ``schedule``."""

    name: str
    task: str  # the registered task's name
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    missed: Missed = "latest"

    @property
    def queue(self) -> str | None:
        return self.options.get("queue")

    def task_id(self, due: float) -> str:
        """The task id of the run due at ``due``: the same in every replica and every retry."""
        return slot_id(self.name, iso(due))


# where a scheduler that cannot write the due time into a message (Cloud Scheduler's Pub/Sub jobs send
# a fixed body) leaves it: the broker fills in the message's publish time, down to the minute
PUBLISH_MINUTE = "<cloudq:publish-minute>"
_PUBLISH_MINUTE = PUBLISH_MINUTE.encode()


def fill_publish_minute(body: bytes, published: float) -> bytes:
    """``body`` with ``PUBLISH_MINUTE`` replaced by ``published`` (epoch seconds) rounded down to the
    minute: a cloud scheduler fires on whole minutes and publishes seconds later, and every
    redelivery of the message keeps its publish time, so the run's task id stays the same."""
    if _PUBLISH_MINUTE not in body:
        return body
    return body.replace(_PUBLISH_MINUTE, iso(published - published % 60).encode())


def slot_id(name: str, scheduled_time: str) -> str:
    return f"{name}@{scheduled_time}"


def scheduled_message(
    name: str,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    scheduled_time: str,
    headers: Mapping[str, str] | None = None,
    ignore_result: bool | None = None,
) -> str:
    """The envelope a cloud scheduler sends at each due time, as JSON text. ``scheduled_time`` is
    the scheduler's own placeholder for the due time (EventBridge's ``<aws.scheduler.scheduled-time>``),
    replaced inside the text when it fires: the task id is the slot's, as a beat would send it.
    Unsigned: the scheduler builds the message (a signing key is refused at plan time)."""
    import json

    from .envelope import VERSION

    data: dict[str, Any] = {
        "v": VERSION,
        "id": slot_id(name, scheduled_time),
        "task": task,
        "args": args,
        "kwargs": kwargs,
        "headers": {**(headers or {}), SCHEDULE_HEADER: name, DUE_HEADER: scheduled_time},
    }
    if ignore_result is not None:
        data["ignore_result"] = ignore_result
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"periodic task name {name!r}: 1-64 letters, digits, '_', '-' or '.' (it names the cloud schedule)"
        )
    return name


def check_missed(missed: str, where: str) -> Missed:
    if missed not in MISSED:
        raise ConfigurationError(f"{where}: missed={missed!r}; allowed: {', '.join(MISSED)}")
    return missed  # type: ignore[return-value]


def check_options(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(options) - ENTRY_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where}: options {', '.join(unknown)} do not apply to a periodic task (each run's id and time come "
            f"from its slot); allowed: {', '.join(sorted(ENTRY_OPTIONS))}"
        )
    return dict(options)


def periodic_entry(
    name: str,
    task: str,
    sched: Any,
    args: Any = (),
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    missed: str = "latest",
    where: str = "",
) -> PeriodicTask:
    """A checked entry: every problem is one ConfigurationError naming the entry."""
    where = where or f"periodic task {name!r}"
    check_name(name)
    if not isinstance(args, (list, tuple)):
        raise ConfigurationError(f"{where}: args must be a list or tuple, got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ConfigurationError(f"{where}: kwargs must be a dict, got {type(kwargs).__name__}")
    return PeriodicTask(
        name=name,
        task=task,
        schedule=to_schedule(sched, where),
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        options=check_options(options or {}, where),
        missed=check_missed(missed, where),
    )


def from_setting(name: str, value: Any) -> PeriodicTask:
    """One ``beat_schedule`` item: ``{"task": ..., "schedule": ..., "args", "kwargs", "options"}``
    plus cloudq's ``missed``."""
    where = f"beat_schedule[{name!r}]"
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a dict with task and schedule, got {type(value).__name__}")
    unknown = sorted(set(value) - ENTRY_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(ENTRY_KEYS))}"
        )
    if value.get("relative"):
        raise ConfigurationError(f"{where}: relative=True is not available: interval runs are aligned on the epoch")
    for key in ("task", "schedule"):
        if key not in value:
            raise ConfigurationError(f"{where} has no {key!r}")
    if not isinstance(value["task"], str) or not value["task"]:
        raise ConfigurationError(f"{where}: task must be a registered task's name, got {value['task']!r}")
    return periodic_entry(
        name,
        value["task"],
        value["schedule"],
        value.get("args", ()),
        value.get("kwargs"),
        value.get("options"),
        value.get("missed", "latest"),
        where,
    )


def signature_parts(sig: Any) -> tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """(task name, args, kwargs, options) of a signature: only its ``task`` (a Task or a task name),
    ``args``, ``kwargs`` and ``options`` attributes are read."""
    task = getattr(sig, "task", None)
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"add_periodic_task takes a signature (task.s(...)), got {sig!r:.60}")
    return (
        name,
        tuple(getattr(sig, "args", ()) or ()),
        dict(getattr(sig, "kwargs", {}) or {}),
        dict(getattr(sig, "options", {}) or {}),
    )


class PeriodicTable:
    """An App's periodic tasks: declared in code (kept here) and in ``beat_schedule`` (read from
    the settings each time, so ``app.conf.beat_schedule = ...`` applies)."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._declared: dict[str, PeriodicTask] = {}

    def add(self, item: PeriodicTask) -> PeriodicTask:
        known = self._declared.get(item.name)
        if known is not None and known != item:
            raise ConfigurationError(
                f"periodic task {item.name!r} is already declared with another schedule or call: give name=..."
            )
        self._declared[item.name] = item
        return item

    def entries(self) -> dict[str, PeriodicTask]:
        """Every entry by name, each task checked against the app's registry."""
        found = dict(self._declared)
        for name, value in self._app.settings.beat_schedule.items():
            item = from_setting(name, value)
            if name in found and found[name] != item:
                raise ConfigurationError(f"periodic task {name!r} is declared both in code and in beat_schedule")
            found[name] = item
        tasks = self._app.tasks
        for item in found.values():
            if item.task not in tasks:
                raise UnknownTask(
                    f"periodic task {item.name!r} sends {item.task!r}, which this app does not define; "
                    f"it defines: {', '.join(sorted(tasks)) or 'none'}"
                )
        return found

    def task_of(self, item: PeriodicTask) -> Task[Any, Any]:
        return self._app.tasks[item.task]
