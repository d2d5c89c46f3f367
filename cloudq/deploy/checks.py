"""Checks every provider makes the same way, each message saying what to change."""

from __future__ import annotations

from .model import QueueSpec
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
