"""group: many signatures sent at once, one GroupResult back (Celery's ``group``).

The members are validated first and sent in batched calls (``app.send_many``: SendMessageBatch
on SQS, one publish batch on Pub/Sub), so a group of 1,000 costs 100 requests on SQS and nothing
is sent when one member's arguments are invalid. Each member carries the group id
(``self.request.group``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .results import GroupResult

if TYPE_CHECKING:
    from ..app import App
    from ..task import Signature


def _app_of(tasks: list[Any], app: App | None) -> App:
    if app is not None:
        return app
    for sig in tasks:
        owner = getattr(getattr(sig, "task", None), "app", None) or getattr(sig, "app", None)
        if owner is not None:
            return owner  # type: ignore[no-any-return]
    from ..app import current_app

    return current_app()


def with_call(
    sig: Signature,
    args: tuple[Any, ...] = (),
    options: dict[str, Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Signature:
    """``sig`` with ``args`` prepended and ``kwargs`` merged (unless it is immutable), ``options`` added."""
    if getattr(sig, "immutable", False):
        args, kwargs = (), None
    return dataclasses.replace(
        sig,
        args=(*args, *sig.args),
        kwargs={**sig.kwargs, **(kwargs or {})},
        options={**sig.options, **(options or {})},
    )


class group:  # noqa: N801 - Celery's name
    """Run signatures in parallel: ``group(add.s(2, 2), add.s(4, 4)).apply_async()`` (also
    ``group(add.s(i, i) for i in range(10))``). ``apply_async(args)`` prepends ``args`` to every
    member (Celery's partial group); returns a GroupResult whose ``.get()`` lists the results in
    order."""

    subtask_type = "group"

    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not hasattr(tasks[0], "apply_async"):
            tasks = tuple(tasks[0])  # one iterable (a list, a generator) of signatures
        self.tasks: list[Any] = list(tasks)
        self.options = options
        self.app = _app_of(self.tasks, app)

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.tasks))})"

    def __iter__(self) -> Iterator[Any]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def set(self, **options: Any) -> group:
        """Options for every member (queue, countdown...) at send: returns the group."""
        self.options.update(options)
        return self

    def clone(self, **options: Any) -> group:
        return group(list(self.tasks), app=self.app, **{**self.options, **options})

    def freeze(self, group_id: str | None = None) -> GroupResult:
        """Give the group and every member its id now, without sending (Celery's ``freeze``):
        the GroupResult is known before anything runs."""
        from ..app import new_task_id

        gid = group_id or self.options.get("task_id") or self.options.get("group_id") or new_task_id()
        self.options["task_id"] = gid
        frozen: list[Any] = []
        for sig in self.tasks:
            if isinstance(sig, group):
                raise TypeError("a group inside a group: flatten it (group(*a.tasks, *b.tasks))")
            task_id = sig.options.get("task_id") or new_task_id()
            frozen.append(with_call(sig, (), {"task_id": task_id, "group_id": gid}))
        self.tasks = frozen
        return self._result(gid)

    def _result(self, gid: str) -> GroupResult:
        from ..results import AsyncResult

        return GroupResult(gid, [AsyncResult(s.options["task_id"], app=self.app) for s in self.tasks], app=self.app)

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        """Send every member (batched), each with ``args`` prepended and ``options`` set."""
        extra = {**self.options, **options}
        gid = extra.pop("task_id", None) or extra.pop("group_id", None)
        result = self.freeze(gid)
        members = [with_call(sig, tuple(args), extra, kwargs) for sig in self.tasks]
        result.results = list(self.app.send_many(members))  # eager mode: EagerResults, same ids
        return result

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    __call__ = delay
