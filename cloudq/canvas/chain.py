"""chain(a, b, c) / ``a | b | c``: each step's result is prepended to the next step's arguments.

Only the first step is sent; its envelope carries the remaining steps (``chain``, next step
LAST, as Celery's message field) and every step's id, pre-assigned here. The executor sends the
next step as part of the finishing step's outcome (``cloudq/canvas/followups.py``), so a chain
needs no waiting worker and survives restarts, on a worker, on Lambda and on push alike.
Celery's option rules: the chain's send options go to the first step, ``task_id`` and ``link``
to the last, ``link_error`` to every step (a failing step stops the chain and fires them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidOptions
from .signature import Signature, from_dict

if TYPE_CHECKING:
    from ..app import App
    from ..results import AsyncResult

CHAIN_TASK = "celery.chain"  # Celery's name for the composite


class chain(Signature):  # noqa: N801 - Celery's name
    """``chain(add.s(2, 2), add.s(4))``; ``chain([sigs])`` works too. Nested chains flatten."""

    __slots__ = ()

    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], (Signature, dict)):
            tasks = tuple(tasks[0])  # chain(generator or list)
        steps: list[Signature] = []
        for task in tasks:
            sig = task if isinstance(task, Signature) else from_dict(task, app)
            steps.extend(sig.tasks if isinstance(sig, chain) else [sig])
        if not steps:
            raise InvalidOptions("chain() needs at least one signature")
        super().__init__(CHAIN_TASK, (), {"tasks": steps}, options, subtask_type="chain", app=app or steps[0].bound_app)

    @property
    def tasks(self) -> list[Signature]:
        steps: list[Signature] = self.kwargs["tasks"]
        return steps

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chain(*self.tasks, other, app=self._app, **self.options)
        return NotImplemented

    def __ror__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chain(other, *self.tasks, app=self._app, **self.options)
        return NotImplemented

    def clone(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        """A copy with every step cloned; partial arguments go to the first step."""
        steps = [step.clone() for step in self.tasks]
        if args or kwargs:
            steps[0] = steps[0].clone(args, kwargs)
        return chain(*steps, app=self._app, **{**self.options, **options})

    def link(self, callback: Signature) -> Signature:
        """Celery: a chain's callback is the last step's."""
        return self.tasks[-1].link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """Celery: a chain's errback is linked to every step, so whichever fails fires it."""
        for step in self.tasks:
            step.link_error(errback)
        return errback

    on_error = link_error

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Celery: calling a chain sends it (``chain(...)()``)."""
        return self.apply_async(args, kwargs)

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run every step here, in order, each result prepended to the next: the last EagerResult."""
        result: Any = None
        for index, step in enumerate(self.tasks):
            step_args = (args or ()) if index == 0 else (result.get(),)
            result = step.apply(step_args, kwargs if index == 0 else None)
        return result

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult:
        """Assign every step's id (the chain's id is the last step's) and return the last step's
        result, whose ``.parent`` walks back to the first."""
        steps = self.tasks
        if _id is not None or self.options.get("task_id"):
            steps[-1].options["task_id"] = _id or self.options["task_id"]
        parent: AsyncResult | None = None
        for step in steps:  # a group step freezes to a GroupResult, a chord to its body's result
            result = step.freeze()
            result.parent = parent
            parent = result
        assert parent is not None
        self.options["task_id"] = steps[-1].id
        return parent

    def expand(self) -> tuple[list[Signature], AsyncResult | None]:
        """The first step to send now (carrying the rest), and the last step's result."""
        options = {key: value for key, value in self.options.items() if key not in ("task_id", "link", "link_error")}
        steps = [step.clone() for step in self.tasks]
        if self.options.get("task_id"):
            steps[-1].options["task_id"] = self.options["task_id"]
        for callback in self.options.get("link") or ():
            steps[-1].link(callback)
        for errback in self.options.get("link_error") or ():
            for step in steps:
                step.link_error(errback)
        last = chain(*steps, app=self._app).freeze()
        first = steps[0].clone(**options)
        if len(steps) > 1:
            rest = [step.to_dict() for step in reversed(steps[1:])]  # next step LAST
            first.options["chain"] = rest
        return [first], last

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, route_name: str | None = None, **options: Any
    ) -> AsyncResult:
        sig = self.clone(args, kwargs, **options) if (args or kwargs or options) else self
        return self.app.send_many([sig])[0]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [step.to_dict() for step in self.tasks]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: App | None = None) -> Signature:
        tasks = (data.get("kwargs") or {}).get("tasks")
        if not isinstance(tasks, list):
            raise InvalidOptions(f"chain signature without kwargs.tasks: {data!r:.80}")
        options = dict(data.get("options") or {})
        for key in ("link", "link_error"):
            if key in options:
                options[key] = [from_dict(sig, app) for sig in options[key]]
        return chain(*[from_dict(step, app) for step in tasks], app=app, **options)

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.tasks)


Signature.TYPES["chain"] = chain
