"""``task.map``, ``task.starmap``, ``task.chunks``: Celery's meaning.

``map``/``starmap`` are ONE task that calls the task on every item in order (one message, one
result: the list); ``chunks(items, n)`` splits the items into n-sized starmaps sent as a group,
so 10,000 small calls cost 10,000 / n messages. (Before the canvas, cloudq's ``task.map`` sent
one task per item: that is ``task.send_each`` now.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..util.chunks import chunks as split
from .builtins import MAP, STARMAP, builtin
from .group import group
from .results import GroupResult
from .signature import Signature

if TYPE_CHECKING:
    from ..task import Task


def _items(items: Iterable[Any]) -> list[Any]:
    return [list(item) if isinstance(item, tuple) else item for item in items]


def map_signature(task: Task[Any, Any], items: Iterable[Any], star: bool = False) -> Signature:
    """The signature of one task calling ``task`` on each item (``task(*item)`` with ``star``)."""
    runner = builtin(task.app, STARMAP if star else MAP)
    assert runner is not None
    return Signature(runner, (), {"task": task.name, "it": _items(items)})


class chunks:  # noqa: N801 - Celery's name
    """``task.chunks(items, n)``: the items (argument tuples) in n-sized ``starmap`` tasks sent
    as a group. ``apply_async()`` (or calling it) returns the GroupResult, whose ``.get()`` is
    one list per chunk; ``.group()`` gives the group to compose."""

    def __init__(self, task: Task[Any, Any], items: Iterable[Any], n: int) -> None:
        if not isinstance(n, int) or n < 1:
            from ..errors import InvalidOptions

            raise InvalidOptions(f"{task.name}.chunks: the chunk size must be an integer >= 1, got {n!r}")
        self.task = task
        self.items = list(items)
        self.n = n

    def __repr__(self) -> str:
        return f"{self.task.name}.chunks({len(self.items)} items, {self.n})"

    def group(self) -> group:
        return group(
            [map_signature(self.task, part, star=True) for part in split(self.items, self.n)], app=self.task.app
        )

    def apply_async(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> GroupResult:
        return self.group().apply_async(args, kwargs, **options)

    def delay(self) -> GroupResult:
        return self.apply_async()

    def __call__(self, **options: Any) -> GroupResult:
        return self.apply_async(**options)
