"""group: many signatures sent at once, one GroupResult back (Celery's ``group``).

The members are validated first and sent in batched calls (``app.send_many``: SendMessageBatch
on SQS, one publish batch on Pub/Sub), so a group of 1,000 costs 100 requests on SQS and nothing
is sent when one member's arguments are invalid. Each member carries the group id
(``self.request.group``). A member may be a chain (a group of chains); a group followed by more
steps in a chain becomes a chord whose body is the next step, as in Celery.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidOptions
from .results import GroupResult
from .signature import Signature, from_dict

if TYPE_CHECKING:
    from ..app import App
    from ..results import AsyncResult

GROUP_TASK = "celery.group"  # Celery's name for the composite
# options that belong to the group itself, not to each member
_OWN_OPTIONS = ("task_id", "group_id", "chain", "link", "link_error")


def as_signatures(tasks: tuple[Any, ...], app: App | None) -> list[Signature]:
    """``tasks`` given as signatures, signature dicts or one iterable of them."""
    if len(tasks) == 1 and not isinstance(tasks[0], (Signature, dict)):
        tasks = tuple(tasks[0])  # group(generator or list)
    return [task if isinstance(task, Signature) else from_dict(task, app) for task in tasks]


class group(Signature):  # noqa: N801 - Celery's name
    """Run signatures in parallel: ``group(add.s(2, 2), add.s(4, 4)).apply_async()`` (also
    ``group(add.s(i, i) for i in range(10))``). ``apply_async(args)`` prepends ``args`` to every
    member (Celery's partial group); returns a GroupResult whose ``.get()`` lists the results in
    order. Send options (queue, countdown...) apply to every member."""

    __slots__ = ()

    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        members = as_signatures(tasks, app)
        for member in members:
            if isinstance(member, group):
                raise InvalidOptions("a group inside a group: flatten it (group(*a.tasks, *b.tasks))")
        bound = app or next((m.bound_app for m in members if m.bound_app is not None), None)
        super().__init__(GROUP_TASK, (), {"tasks": members}, options, subtask_type="group", app=bound)

    @property
    def tasks(self) -> list[Signature]:
        members: list[Signature] = self.kwargs["tasks"]
        return members

    def __iter__(self) -> Iterator[Signature]:  # type: ignore[override]
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"group([{', '.join(map(repr, self.tasks))}])"

    def clone(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        """A copy with every member cloned, partial arguments prepended to each (Celery)."""
        members = [member.clone(args, kwargs) for member in self.tasks]
        return group(members, app=self._app, **{**self.options, **options})

    def link(self, callback: Signature) -> Signature:
        raise InvalidOptions(
            "group.link: to run a task after every member of a group, use a chord: chord(group)(callback)"
        )

    def link_error(self, errback: Signature) -> Signature:
        """Celery: a group's errback is linked to every member."""
        for member in self.tasks:
            member.link_error(errback)
        return errback

    on_error = link_error

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:  # type: ignore[override]
        """Celery: calling a group sends it, the arguments prepended to every member."""
        return self.apply_async(args, kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:  # type: ignore[override]
        return self.apply_async(args, kwargs)

    def apply_async(  # type: ignore[override]
        self, args: Any = None, kwargs: dict[str, Any] | None = None, route_name: str | None = None, **options: Any
    ) -> GroupResult:
        sig = self.clone(args, kwargs, **options) if (args or kwargs or options) else self
        result: GroupResult = self.app.send_many([sig])[0]  # type: ignore[assignment]
        return result

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> GroupResult:
        """Run every member here, in order (Celery's ``group.apply``): a GroupResult of EagerResults."""
        from ..app import new_task_id

        results = [member.apply(args, kwargs) for member in self.tasks]
        return GroupResult(self.options.get("task_id") or new_task_id(), results, app=self.app)

    def freeze(self, _id: str | None = None, **_: Any) -> GroupResult:  # type: ignore[override]
        """Give the group and every member its id now, without sending (Celery's ``freeze``)."""
        from ..app import new_task_id

        gid = _id or self.options.get("task_id") or self.options.get("group_id") or new_task_id()
        self.options["task_id"] = gid
        results: list[AsyncResult | GroupResult] = []
        for member in self.tasks:
            member.options.setdefault("group_id", gid)
            results.append(member.freeze())
        return GroupResult(gid, results, app=self.app)  # type: ignore[arg-type]

    def expand(self) -> tuple[list[Signature], Any]:
        """Every member's calls (sent in the same batched requests) and the GroupResult."""
        if self.options.get("chain"):  # a group followed by more chain steps: a chord (Celery)
            from .chord import chord

            steps = [from_dict(step, self._app) if isinstance(step, dict) else step for step in self.options["chain"]]
            body = steps.pop()  # next step LAST
            if steps:
                body = body.clone(chain=list(steps))
            rest = {k: v for k, v in self.options.items() if k != "chain"}
            return chord(group(self.tasks, app=self._app, **rest), body, app=self._app).expand()
        sending = group([m.clone() for m in self.tasks], app=self._app, **self.options)
        shared = {k: v for k, v in self.options.items() if k not in _OWN_OPTIONS and v is not None}
        result = sending.freeze()
        calls: list[Signature] = []
        for member in sending.tasks:
            member_calls, _ = member.clone(**shared).expand()
            calls.extend(member_calls)
        return calls, result

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [member.to_dict() for member in self.tasks]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: App | None = None) -> Signature:
        tasks = (data.get("kwargs") or {}).get("tasks")
        if not isinstance(tasks, list):
            raise InvalidOptions(f"group signature without kwargs.tasks: {data!r:.80}")
        options = dict(data.get("options") or {})
        for key in ("link", "link_error"):
            if key in options:
                options[key] = [from_dict(sig, app) for sig in options[key]]
        return group([from_dict(task, app) for task in tasks], app=app, **options)


Signature.TYPES["group"] = group
