"""When a process-pool child is replaced: Celery's ``--max-tasks-per-child`` and
``--max-memory-per-child`` (KiB of resident memory).

Checked between tasks only, never mid-task: after a task finishes, its child is replaced when it
has run ``max_tasks`` tasks or its resident size is above ``max_memory_kib`` (the task that
grew it completes first, as in Celery). The resident size is read from ``/proc`` (Linux, where
workers run in containers); elsewhere the memory limit is refused at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

PROC = Path("/proc")


def resident_kib(pid: int) -> int | None:
    """The resident set size of process ``pid`` in KiB; None when it cannot be read (it exited)."""
    try:
        fields = (PROC / str(pid) / "statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class Recycle:
    max_tasks: int | None = None
    max_memory_kib: int | None = None

    def __post_init__(self) -> None:
        for label, value in (("max_tasks_per_child", self.max_tasks), ("max_memory_per_child", self.max_memory_kib)):
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigurationError(f"{label} must be a whole number >= 1, got {value!r}")
        if self.max_memory_kib is not None and not (PROC / "self" / "statm").exists():
            raise ConfigurationError(
                "max_memory_per_child reads the resident size from /proc, which this system lacks (Linux only)"
            )

    def __bool__(self) -> bool:
        return self.max_tasks is not None or self.max_memory_kib is not None

    def reason(self, served: int, pid: int | None) -> str | None:
        """Why the child that has run ``served`` tasks must be replaced now, or None."""
        if self.max_tasks is not None and served >= self.max_tasks:
            return f"it ran {served} task(s) (max_tasks_per_child={self.max_tasks})"
        if self.max_memory_kib is not None and pid is not None:
            rss = resident_kib(pid)
            if rss is not None and rss > self.max_memory_kib:
                return f"its resident size is {rss} KiB (max_memory_per_child={self.max_memory_kib} KiB)"
        return None
