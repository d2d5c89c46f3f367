"""Signature: a task call packed for later (Celery's ``signature``/``subtask``), JSON all the way.

A signature names its task (a string, so a producer that only knows the name can send it) and
holds ``args``, ``kwargs``, apply_async ``options`` and ``immutable``. It travels inside envelopes
(links, chain steps, chord bodies) as ``to_dict()``, the shape of Celery's signature dict.

Partial application follows Celery: arguments given later are PREPENDED to the stored ones
(``add.s(2).delay(8)`` runs ``add(8, 2)``), keyword arguments update the stored ones, options
override; an immutable signature (``task.si``) keeps its arguments when called by a chain or link.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime, timedelta
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidOptions

if TYPE_CHECKING:
    from ..app import App
    from ..results import AsyncResult
    from ..task import Task

# what Signature.apply_async / app.send_many understand, with Celery's names; anything else is
# refused at send, naming the option, instead of being silently ignored
SEND_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "expires",
        "queue",
        "task_id",
        "ordering_key",
        "headers",
        "ignore_result",
        "serializer",
        "priority",
        "group_id",
        "link",
        "link_error",
        "parent_id",
        "root_id",
        "chain",  # the remaining steps of a chain (set by chain, not by users)
        "chord",  # a chord header task's part (set by chord, not by users)
    }
)
_LINK_OPTIONS = ("link", "link_error")
# options a later merge may not change (Celery's _IMMUTABLE_OPTIONS): a group member keeps its group
_FIXED_OPTIONS = frozenset({"group_id"})


class Signature:
    """``Signature(task, args, kwargs, options, immutable=..., subtask_type=..., app=..., **options)``:
    Celery's constructor. ``task`` is a Task, a task name or a signature dict."""

    __slots__ = ("_app", "_type", "args", "immutable", "kwargs", "options", "subtask_type", "task")
    TYPES: ClassVar[dict[str, type[Signature]]] = {}  # subtask_type -> class (chain, group, chord)
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    immutable: bool
    subtask_type: str | None
    _app: App | None
    _type: Task[Any, Any] | None

    def __init__(
        self,
        task: Task[Any, Any] | str | dict[str, Any] | Signature,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        *,
        immutable: bool = False,
        subtask_type: str | None = None,
        app: App | None = None,
        **more_options: Any,
    ) -> None:
        if isinstance(task, (dict, Signature)):  # Celery: signature(dict) rebuilds one
            source: Signature = task if isinstance(task, Signature) else from_dict(task, app)
            args, kwargs = source.args, source.kwargs
            options = {**source.options, **(options or {})}
            immutable, subtask_type = source.immutable, source.subtask_type
            app = app or source._app
            found: Task[Any, Any] | str = source._type or source.task
        else:
            found = task
        self._type = None
        if isinstance(found, str):
            self.task = found
        else:
            self._type, self.task = found, found.name
            app = app or found.app
        if not isinstance(args, (tuple, list)) and args is not None:
            raise InvalidOptions(f"signature of {self.task}: args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise InvalidOptions(f"signature of {self.task}: kwargs must be a dict, got {type(kwargs).__name__}")
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.options = {**(options or {}), **more_options}
        self.immutable = bool(immutable)
        self.subtask_type = subtask_type
        self._app = app

    # -- what it calls ------------------------------------------------------------------------------

    @property
    def app(self) -> App:
        if self._app is None:
            from ..app import current_app

            self._app = current_app()
        return self._app

    @property
    def bound_app(self) -> App | None:
        """The app given or taken from the task, without falling back to the current app."""
        return self._app

    @property
    def name(self) -> str:
        return self.task

    @property
    def type(self) -> Task[Any, Any]:
        """The Task this signature calls, looked up by name in its app (Celery's ``sig.type``)."""
        if self._type is None:
            from ..errors import UnknownTask

            found = self.app.tasks.get(self.task)
            if found is None:
                raise UnknownTask(
                    f"signature of unknown task {self.task!r}: it is not registered in app {self.app.name!r}"
                )
            self._type = found
        return self._type

    @property
    def id(self) -> str | None:
        """The task id given or frozen for this call (Celery's ``sig.id``), else None."""
        task_id = self.options.get("task_id")
        return task_id if isinstance(task_id, str) else None

    # -- partial application (Celery's semantics) -----------------------------------------------------

    def _merge(
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        force: bool = False,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        new_options = dict(self.options)
        for key, value in (options or {}).items():
            if key not in _FIXED_OPTIONS or key not in self.options:
                new_options[key] = value
        if self.immutable and not force:
            return self.args, dict(self.kwargs), new_options
        new_args = tuple(args) + self.args if args else self.args
        return new_args, {**self.kwargs, **kwargs} if kwargs else dict(self.kwargs), new_options

    def clone(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        """A copy with partial arguments applied (prepended; ignored if immutable) and options set;
        links are copied, so linking the clone leaves this one alone."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        for key in _LINK_OPTIONS:
            if key in new_options:
                new_options[key] = [
                    sig.clone() if isinstance(sig, Signature) else copy.deepcopy(sig) for sig in new_options[key]
                ]
        clone = copy.copy(self)
        clone.args, clone.kwargs, clone.options = new_args, new_kwargs, new_options
        return clone

    partial = clone

    def replace(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None
    ) -> Signature:
        """A copy with ``args``/``kwargs``/``options`` replaced (not merged) where given."""
        clone = copy.copy(self)
        if args is not None:
            clone.args = tuple(args)
        if kwargs is not None:
            clone.kwargs = dict(kwargs)
        if options is not None:
            clone.options = dict(options)
        return clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set options in place (``sig.set(countdown=10)``) and return the signature."""
        if immutable is not None:
            self.immutable = bool(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = bool(immutable)

    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this task's result prepended when it succeeds; returns ``callback``."""
        self.options.setdefault("link", []).append(_as_signature(callback, self._app))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` when this task fails for good (see docs: how it is called); returns it."""
        self.options.setdefault("link_error", []).append(_as_signature(errback, self._app))
        return errback

    on_error = link_error

    def __or__(self, other: Any) -> Signature:
        from .chain import chain

        if isinstance(other, Signature):
            return chain(self, other)
        return NotImplemented

    # -- calling ------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, as a function, with the partial arguments applied (immutable too)."""
        new_args, new_kwargs, _ = self._merge(args, kwargs, None, force=True)
        return self.type(*new_args, **new_kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, route_name: str | None = None, **options: Any
    ) -> AsyncResult:
        """Send the call (partial arguments prepended unless immutable, options override)."""
        sig = self.clone(args, kwargs, **options) if (args or kwargs or options) else self
        return self.app.send_many([sig])[0]

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run the call eagerly here (Celery's ``sig.apply()``): the task's ``apply``."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        return self.type.apply(
            new_args, new_kwargs, task_id=new_options.get("task_id"), headers=new_options.get("headers")
        )

    def expand(self) -> tuple[list[Signature], AsyncResult | None]:
        """What sending this signature sends now, and the handle to return (None: the result of
        the one message). Composite types (chain, group, chord) override it; ``app.send_many``
        sends every expanded call in the same batched requests."""
        return [self], None

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult:
        """Assign the task id now (``options["task_id"]``) and return its AsyncResult, without
        sending: what lets chains pre-assign every step's id, so a re-sent step carries the same id."""
        from ..app import new_task_id
        from ..results import AsyncResult

        if _id is not None:
            self.options["task_id"] = _id
        task_id = self.options.setdefault("task_id", new_task_id())
        return AsyncResult(task_id, app=self.app)

    # -- JSON ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Celery's signature dict with JSON values only: links as signature dicts, ``eta`` as epoch
        seconds, a datetime ``expires`` as ISO 8601 (a number is seconds from each send)."""
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "options": options_to_json(self.task, self.options),
            "immutable": self.immutable,
            "subtask_type": self.subtask_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: App | None = None) -> Signature:
        return from_dict(data, app)

    # -- dunder ---------------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Signature):
            return self.to_dict() == other.to_dict()
        if isinstance(other, dict):
            return self.to_dict() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as Celery's (a dict)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{'%' if self.immutable else ''}{self.task}({', '.join(parts)})"


def _as_signature(value: Any, app: App | None) -> Signature:
    if isinstance(value, Signature):
        return value
    if isinstance(value, dict):
        return from_dict(value, app)
    raise InvalidOptions(f"link/link_error take signatures (task.s(...)), got {type(value).__name__} {value!r:.60}")


def options_to_json(task: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as JSON values: links and chain steps as dicts, times as numbers/ISO strings;
    an option no cloudq send understands, or a value that is not JSON, is refused naming it."""
    from ..validation import to_json_value

    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in SEND_OPTIONS:
            raise InvalidOptions(
                f"signature of {task}: unknown option {key!r} (cloudq sends with: {', '.join(sorted(SEND_OPTIONS))})"
            )
        if value is None:
            continue
        if key in (*_LINK_OPTIONS, "chain"):
            out[key] = [_as_signature(sig, None).to_dict() if not isinstance(sig, dict) else sig for sig in value]
        elif key == "eta" and isinstance(value, (datetime, timedelta)):
            from ..app import to_epoch

            out[key] = to_epoch(value)
        elif key == "expires" and isinstance(value, datetime):
            out[key] = value.isoformat()
        elif key in ("countdown", "eta", "expires") and isinstance(value, float) and not math.isfinite(value):
            raise InvalidOptions(f"signature of {task}: {key} must be finite, got {value!r}")
        else:
            out[key] = to_json_value(value, f"option {key!r} of the signature of {task}")
    return out


_COMPOSITES = frozenset({"chain", "group", "chord"})  # subtask types, each defined in the module of its name


def from_dict(data: dict[str, Any], app: App | None = None) -> Signature:
    """A signature from its JSON form (``to_dict()``, or Celery's dict); composite types
    (chain...) come back as their class. A dict that is not a signature raises InvalidOptions."""
    if not isinstance(data, dict) or not isinstance(data.get("task"), str) or not data["task"]:
        raise InvalidOptions(f"not a signature dict (needs a task name): {data!r:.80}")
    kind = data.get("subtask_type")
    cls = Signature.TYPES.get(kind) if kind else None
    if kind and cls is None:
        if kind in _COMPOSITES:  # its module registers the type; imported on first use
            import_module(f"{__package__}.{kind}")
            cls = Signature.TYPES.get(kind)
        if cls is None:
            raise InvalidOptions(f"signature of subtask_type {kind!r} is not known to this cloudq")
    if cls is not None:
        return cls.from_dict(data, app)
    options = dict(data.get("options") or {})
    for key in _LINK_OPTIONS:
        if key in options:
            options[key] = [from_dict(sig, app) for sig in options[key]]
    return Signature(
        data["task"],
        data.get("args") or (),
        data.get("kwargs") or {},
        options,
        immutable=bool(data.get("immutable", False)),
        subtask_type=None,
        app=app,
    )


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """Celery's ``signature``: ``signature("proj.add", args=(2, 2), countdown=10)`` for a task the
    producer does not import, ``signature(task, ...)``, or a signature dict / Signature."""
    if isinstance(varies, dict):
        return from_dict(varies, kwargs.get("app"))
    if isinstance(varies, Signature) and not args and not kwargs:
        return varies.clone()
    return Signature(varies, *args, **kwargs)


subtask = signature  # Celery's old name
