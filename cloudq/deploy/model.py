"""What an app needs in the cloud, derived from its code and settings (provider-neutral).

Every queue the app routes to becomes a ``QueueSpec`` carrying the task options that shape its
cloud resources: the longest ``time_limit`` (function timeout, lease), the most retries (the
service's own dead-letter count) and the gentlest backoff (push retry policy). Which runtime
serves a queue and how is the ``deploy`` table's business (settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..periodic import scheduled_message
from ..retry import deliveries_allowed
from ..schedules import Schedule
from .settings import DeploySettings, PackageOptions, QueueOptions, check_stage, parse_deploy_settings

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    max_retries: int
    time_limit: float | None
    retry_backoff: float
    retry_backoff_max: float


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    tasks: tuple[TaskSpec, ...]
    options: QueueOptions
    runtime: str
    max_retries: int  # the most any of its tasks (or the app default) allows
    time_limit: float | None  # the longest of its tasks' limits, None when none has one

    @property
    def min_backoff(self) -> float:
        return min((t.retry_backoff for t in self.tasks), default=0.0)

    @property
    def max_backoff(self) -> float:
        return max((t.retry_backoff_max for t in self.tasks), default=0.0)

    def limited_tasks(self, seconds: float) -> list[TaskSpec]:
        """Tasks whose time_limit exceeds ``seconds``."""
        return [t for t in self.tasks if t.time_limit is not None and t.time_limit > seconds]


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A periodic task as a cloud scheduler runs it: where its runs go and what they carry."""

    name: str
    task: str
    queue: str  # the queue its runs are sent to (routed like any send)
    schedule: Schedule
    args: list[Any]  # JSON-compatible (the task's validator's output)
    kwargs: dict[str, Any]
    options: dict[str, Any]  # the entry's apply_async options

    def message(self, scheduled_time: str, headers: dict[str, str] | None = None) -> str:
        """The envelope text, with the scheduler's due-time placeholder in the id and headers."""
        own = dict(self.options.get("headers") or {})
        return scheduled_message(
            self.name,
            self.task,
            self.args,
            self.kwargs,
            scheduled_time,
            {**own, **(headers or {})},
            self.options.get("ignore_result"),
        )


@dataclass(frozen=True, slots=True)
class AppModel:
    app: str
    app_path: str  # module:attribute, as the functions will import it
    stage: str
    broker_url: str
    results_url: str
    settings: Settings
    queues: tuple[QueueSpec, ...]
    package: PackageOptions
    tags: dict[str, str] = field(default_factory=dict)
    schedules: tuple[ScheduleSpec, ...] = ()  # periodic tasks the cloud's scheduler runs (deploy schedules="cloud")
    options: DeploySettings = field(default_factory=DeploySettings)  # the whole deploy table

    def queue(self, name: str) -> QueueSpec:
        return next(q for q in self.queues if q.name == name)

    def by_runtime(self, runtime: str) -> list[QueueSpec]:
        return [q for q in self.queues if q.runtime == runtime]


def deploy_settings(settings: Settings) -> DeploySettings:
    return parse_deploy_settings(dict(settings.deploy))


def build_model(app: App, app_path: str, stage: str | None = None) -> AppModel:
    """The app's cloud needs. ``stage`` defaults to the deploy table's ``stage``."""
    options = deploy_settings(app.settings)
    queues: dict[str, list[TaskSpec]] = {name: [] for name in app.queues()}
    for task in app.tasks.values():
        policy = task.retry_policy
        retries = deliveries_allowed(policy.max_retries) - 1  # max_retries=None: the lost-delivery bound
        backoff = 1.0 if policy.backoff is True else float(policy.backoff)
        spec = TaskSpec(task.name, retries, task.time_limit, backoff, policy.backoff_max)
        queues.setdefault(app.queue_for(task), []).append(spec)
    schedules = _schedules(app) if options.schedules == "cloud" else ()
    for scheduled in schedules:
        queues.setdefault(scheduled.queue, [])
    specs = []
    for name, tasks in queues.items():
        queue_options = options.for_queue(name)
        limits = [t.time_limit for t in tasks if t.time_limit is not None]
        specs.append(
            QueueSpec(
                name=name,
                tasks=tuple(tasks),
                options=queue_options,
                runtime=queue_options.runtime or "container",
                max_retries=max(
                    (t.max_retries for t in tasks), default=deliveries_allowed(app.settings.max_retries) - 1
                ),
                time_limit=max(limits) if limits else None,
            )
        )
    return AppModel(
        app=app.name,
        app_path=app_path,
        stage=check_stage(stage or options.stage),
        broker_url=app.broker_url,
        results_url=app.results_url,
        settings=app.settings,
        queues=tuple(specs),
        package=options.package,
        tags=dict(options.tags),
        schedules=schedules,
        options=options,
    )


def _schedules(app: App) -> tuple[ScheduleSpec, ...]:
    out = []
    for item in app.periodic_tasks.values():
        task = app.tasks[item.task]
        args, kwargs = task.validator.to_message(item.args, item.kwargs)
        queue = app.queue_for(task, item.queue)
        out.append(ScheduleSpec(item.name, item.task, queue, item.schedule, args, kwargs, dict(item.options)))
    return tuple(out)
