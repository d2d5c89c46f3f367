"""Celery's setting names, in one table: what ``app.conf``, ``app.config_from_object`` and
docs/coming-from-celery.md use to accept a Celery name, translate it, or refuse it in one line.

A row is ``celery name -> (cloudq setting or None, note)``: with a setting, the value is
translated (see ``_CONVERT``) and stored under it; with None, the note is the ConfigurationError
(it names the cloudq equivalent or says why there is none). ``ACCEPTED`` names are taken and
change nothing because cloudq always behaves that way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .errors import ConfigurationError

SETTINGS: dict[str, tuple[str | None, str]] = {
    "broker_url": ("broker", "a cloudq broker URL: sqs://, pubsub://, sqlite:///..., memory://"),
    "result_backend": ("results", "a cloudq result store URL: dynamodb://, firestore://, sqlite:///..."),
    "task_routes": ("routes", "task name (glob) -> queue; {'queue': q} values are read as q"),
    "task_default_queue": ("default_queue", "same meaning"),
    "task_always_eager": ("eager", "same meaning"),
    "task_eager_propagates": ("eager_propagates", "same meaning"),
    "result_expires": ("result_expires", "seconds or a timedelta; None keeps results forever (0)"),
    "task_track_started": ("track_started", "same meaning"),
    "task_time_limit": ("time_limit", "seconds, the hard limit"),
    "task_soft_time_limit": (
        "soft_time_limit",
        "seconds; raises SoftTimeLimitExceeded in the task (async: at its await)",
    ),
    "task_default_retry_delay": ("default_retry_delay", "seconds (Celery's 180 s default too)"),
    "task_annotations": ("annotations", "{task name or '*': {option: value}} applied at registration"),
    "task_create_missing_queues": ("create_missing", "same meaning: queues are created on first use"),
    "worker_concurrency": ("concurrency", "same meaning (threads, processes or coroutines per worker)"),
    "worker_pool": ("pool", "threads, process, async, or Celery's prefork (= process) and solo"),
    "worker_disable_rate_limits": ("disable_rate_limits", "same meaning: every rate_limit is ignored"),
    "broker_transport_options": ("broker_options", "options of the broker URL's backend"),
    "task_acks_late": (None, "accepted: cloudq always acknowledges after the outcome"),
    "task_reject_on_worker_lost": (None, "accepted: a lost worker's delivery always runs again"),
    "task_serializer": (None, "accepted as 'json' only: messages are JSON, never pickle"),
    "result_serializer": (None, "accepted as 'json' only: results are JSON"),
    "accept_content": (None, "accepted when it lists json only: cloudq reads JSON, never pickle"),
    "enable_utc": (None, "accepted as True: cloudq's times are UTC"),
    "timezone": (
        None,
        "accepted as 'UTC' only: eta/expires are epoch seconds, naive datetimes UTC; periodic tasks take "
        "crontab(timezone=...)",
    ),
    "worker_prefetch_multiplier": (
        None,
        "use prefetch_multiplier (or cloudq worker --prefetch-multiplier): it counts messages per slot",
    ),
    "task_queues": (
        None,
        "cloudq has no AMQP exchanges or bindings: queues are named by task_routes/queue= and created on first use",
    ),
    "task_default_exchange": (None, "cloudq has no AMQP exchanges: route with task_routes or queue="),
    "task_default_exchange_type": (None, "cloudq has no AMQP exchanges: route with task_routes or queue="),
    "task_default_routing_key": (None, "cloudq has no routing keys: the queue name is the route"),
    "task_default_rate_limit": ("default_rate_limit", "same meaning: per worker, '10/s', '100/m', '1000/h'"),
    "task_ignore_result": (None, "use @app.task(ignore_result=True) or apply_async(ignore_result=True)"),
    "result_extended": ("result_extended", "same meaning: records keep args, kwargs, queue and worker"),
    "worker_max_tasks_per_child": ("max_tasks_per_child", "same meaning (process pool)"),
    "worker_max_memory_per_child": ("max_memory_per_child", "same meaning: KiB resident, process pool"),
    "worker_send_task_events": (None, "cloudq sends no events: each task logs one line per event"),
    "task_send_sent_event": (None, "cloudq sends no events: use the after_task_publish signal"),
    "beat_schedule": (
        "beat_schedule",
        "same entries (task, schedule, args, kwargs, options) plus missed=; run by cloudq beat or the cloud's scheduler",
    ),
    "imports": (None, "use App(include=[...]) or app.autodiscover_tasks([...])"),
    "include": (None, "use App(include=[...]) or app.autodiscover_tasks([...])"),
}

ACCEPTED = frozenset({"task_acks_late", "task_reject_on_worker_lost"})


def _routes(value: Any) -> Any:
    """Celery's ``{"name": {"queue": "q"}}`` (or a list of such dicts) as cloudq's name -> queue."""
    tables = value if isinstance(value, (list, tuple)) else [value]
    out: dict[str, Any] = {}
    for table in tables:
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"task_routes: cloudq takes dicts of task name (glob) -> queue, not {type(table).__name__} "
                "(router functions/classes are not supported)"
            )
        for name, route in table.items():
            if isinstance(route, dict):
                extra = sorted(set(route) - {"queue"})
                if extra or "queue" not in route:
                    raise ConfigurationError(
                        f"task_routes[{name!r}]: cloudq routes by queue only (no exchange/routing_key), got {route}"
                    )
                route = route["queue"]
            out[name] = route
    return out


def _seconds(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, timedelta) else value


def _expires(value: Any) -> Any:
    return 0 if value is None else _seconds(value)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "task_routes": _routes,
    "result_expires": _expires,
    "task_time_limit": _seconds,
    "task_soft_time_limit": _seconds,
    "task_default_retry_delay": _seconds,
}


def _accepted_as_is(name: str, value: Any) -> bool:
    """The Celery settings cloudq takes because the value is what cloudq does anyway."""
    if name in ACCEPTED:
        return True
    if name in ("task_serializer", "result_serializer"):
        return bool(value == "json")
    if name == "accept_content":
        return isinstance(value, (list, tuple, set)) and set(value) <= {"json", "application/json"}
    if name == "enable_utc":
        return value is True
    if name == "timezone":
        return bool(value in ("UTC", "Etc/UTC"))
    return False


def translate(name: str, value: Any) -> tuple[str, Any] | None:
    """``(cloudq setting, value)`` for a Celery setting, None for one accepted as a no-op, the
    name itself when it is not a Celery name; ConfigurationError (one line) for one that does
    not apply."""
    row = SETTINGS.get(name)
    if row is None:
        return name, value
    target, note = row
    if target is not None:
        convert = _CONVERT.get(name)
        return target, convert(value) if convert else value
    if _accepted_as_is(name, value):
        return None
    raise ConfigurationError(f"Celery setting {name}={value!r:.60} does not apply to cloudq: {note}")
