"""Which queue a task goes to: explicit > the task's own queue > first matching route rule > default."""

from __future__ import annotations

from fnmatch import fnmatchcase


class Router:
    def __init__(self, rules: dict[str, str], default_queue: str) -> None:
        self._rules = list(rules.items())
        self.default_queue = default_queue
        self._cache: dict[str, str] = {}

    def route(self, task_name: str, task_queue: str | None = None, explicit: str | None = None) -> str:
        if explicit:
            return explicit
        if task_queue:
            return task_queue
        queue = self._cache.get(task_name)
        if queue is None:
            queue = next(
                (target for pattern, target in self._rules if fnmatchcase(task_name, pattern)),
                self.default_queue,
            )
            self._cache[task_name] = queue
        return queue

    def queues(self, task_queues: list[str | None]) -> list[str]:
        """Every queue a worker of this app might need to listen to, default first."""
        seen = {self.default_queue: None}
        for queue in [*task_queues, *(target for _, target in self._rules)]:
            if queue:
                seen.setdefault(queue, None)
        return list(seen)
