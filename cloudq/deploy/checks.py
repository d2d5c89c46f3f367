"""Checks every provider makes the same way, each message saying what to change."""

from __future__ import annotations

from .model import AppModel, QueueSpec, ScheduleSpec
from .settings import queue_table


def time_limit_problems(queue: QueueSpec, runtime: str, most_s: float, timeout_s: float) -> list[str]:
    """Tasks whose ``time_limit`` a serverless runtime cannot give them: above what the runtime ever
    allows (``most_s``), or above this queue's configured ``timeout_s``."""
    where = queue_table(queue.name)
    out = []
    for task in queue.limited_tasks(min(most_s, timeout_s)):
        limit = task.time_limit or 0.0
        if limit > most_s:
            out.append(
                f"task {task.name!r} has time_limit={limit:g} s but queue {queue.name!r} runs on {runtime}, which "
                f'allows at most {most_s:g} s: lower its time_limit, or set runtime = "container" in {where}'
            )
        else:
            out.append(
                f"task {task.name!r} has time_limit={limit:g} s, longer than the {timeout_s:g} s timeout of queue "
                f"{queue.name!r} on {runtime}: raise timeout in {where} or lower the task's time_limit"
            )
    return out


def beat_hint() -> str:
    return 'run it with `cloudq beat` instead (schedules = "beat" in [tool.cloudq.deploy])'


def schedule_problems(model: AppModel, scheduler: str) -> tuple[list[ScheduleSpec], list[str]]:
    """The periodic tasks a cloud scheduler can send as they are, and why the others cannot: the
    scheduler builds each run's message, so it cannot sign it nor compute an ``expires`` from the
    due time."""
    problems: list[str] = []
    if model.schedules and model.settings.signing_key is not None:
        problems.append(
            f"periodic tasks cannot be deployed to {scheduler} with a signing key: the scheduler builds each "
            f"run's message and cannot sign it; {beat_hint()}"
        )
    fine = []
    for spec in model.schedules:
        if "expires" in spec.options:
            problems.append(
                f"periodic task {spec.name!r}: options expires is relative to each run's due time, which "
                f"{scheduler} cannot compute into the message; remove it or {beat_hint()}"
            )
        else:
            fine.append(spec)
    return fine, problems
