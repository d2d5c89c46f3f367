"""One scenario that proves every runtime fires the task hooks and signals alike.

``HookScenario(app)`` defines four tasks (one succeeds, one fails, one retries then fails, one is
expired before it runs) on a ``base=`` class whose handlers record themselves, and builds their
messages; a runtime test runs those messages its own way (worker, Lambda batch, push request) and
asserts ``scenario.trace() == scenario.expected()``: the same hooks and signals in the same order
per task, with the same arguments. ``SignalRecorder`` records any signals by name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..envelope import build
from ..interfaces import OutgoingMessage
from ..task import Task

if TYPE_CHECKING:
    from ..app import App

TASK_SIGNALS = ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry", "task_revoked")
WORKER_SIGNALS = (
    "worker_init",
    "worker_ready",
    "worker_shutting_down",
    "worker_shutdown",
    "worker_process_init",
    "worker_process_shutdown",
)

Event = tuple[str, dict[str, Any]]


class SignalRecorder:
    """Records ``(signal name, {"sender": ..., **arguments})`` of the named signals while entered
    (from any thread: handlers may run records in threads)."""

    def __init__(self, names: Iterable[str] = (*TASK_SIGNALS, *WORKER_SIGNALS)) -> None:
        self.names = tuple(names)
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._connected: list[tuple[signals.Signal, Any]] = []

    def add(self, name: str, arguments: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((name, arguments))

    def __enter__(self) -> SignalRecorder:
        for name in self.names:

            def receiver(sender: Any = None, signal: Any = None, _name: str = name, **kwargs: Any) -> None:
                self.add(_name, {"sender": sender, **kwargs})

            signal = getattr(signals, name)
            signal.connect(receiver)
            self._connected.append((signal, receiver))
        return self

    def __exit__(self, *exc: object) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver)
        self._connected.clear()

    def named(self, *names: str) -> list[Event]:
        """The events of these signals (all when none is named), in order."""
        with self._lock:
            return [(n, a) for n, a in self.events if not names or n in names]


def _error(exc: Any) -> tuple[str, str] | None:
    return (type(exc).__name__, str(exc)) if isinstance(exc, BaseException) else None


class _Recorded(Task[Any, Any]):
    """The scenario's base class: every Celery handler records its call in ``recorder``."""

    recorder: SignalRecorder | None = None

    def _note(self, name: str, **arguments: Any) -> None:
        if self.recorder is not None:
            self.recorder.add(name, {"sender": self, **arguments})

    def before_start(self, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self._note("before_start", task_id=task_id, args=args, kwargs=kwargs)

    def on_success(self, retval: Any, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self._note("on_success", retval=retval, task_id=task_id, args=args, kwargs=kwargs)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self._note("on_failure", exc=exc, task_id=task_id, args=args, kwargs=kwargs, einfo=einfo)

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self._note("on_retry", exc=exc, task_id=task_id, args=args, kwargs=kwargs, einfo=einfo)

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self._note("after_return", status=status, retval=retval, task_id=task_id, args=args, kwargs=kwargs)


class HookScenario:
    """Four tasks on ``app`` and their messages; ``trace()`` vs ``expected()`` per task name."""

    def __init__(self, app: App, recorder: SignalRecorder | None = None) -> None:
        self.app = app
        self.recorder = recorder or SignalRecorder()
        base = type("RecordedTask", (_Recorded,), {"recorder": self.recorder})

        @app.task(name="hooks.add", base=base)
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="hooks.boom", base=base)
        def boom() -> None:
            raise ValueError("boom")

        @app.task(name="hooks.flaky", base=base, autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0)
        def flaky(n: int) -> None:
            raise KeyError(f"flaky {n}")

        @app.task(name="hooks.late", base=base)
        def late() -> None: ...

        now = time.time()
        self.calls: dict[str, tuple[list[Any], float | None]] = {
            "hooks.add": ([2, 3], None),
            "hooks.boom": ([], None),
            "hooks.flaky": ([7], None),
            "hooks.late": ([], now - 1),
        }
        self.ids = {name: f"{name.split('.')[1]}-{time.monotonic_ns()}" for name in self.calls}
        self.bodies = {
            name: build(self.ids[name], name, args, {}, sent_at=now, expires=expires, key=app.signing_key)
            for name, (args, expires) in self.calls.items()
        }

    def messages(self) -> list[OutgoingMessage]:
        return [OutgoingMessage(body, attributes={"task": name}) for name, body in self.bodies.items()]

    def trace(self) -> dict[str, list[tuple[Any, ...]]]:
        """The recorded hooks and task signals of the scenario's tasks, normalised, by task name."""
        out: dict[str, list[tuple[Any, ...]]] = {name: [] for name in self.calls}
        for name, a in self.recorder.named():
            sender = a.get("sender")
            task = getattr(sender, "name", None)
            if task not in out:
                continue
            request = a.get("request")
            task_id = a.get("task_id", getattr(request, "id", None))
            if name in ("task_prerun", "before_start"):
                row: tuple[Any, ...] = (name, task_id, a["args"], a["kwargs"])
            elif name == "task_success":
                row = (name, a["result"])
            elif name == "on_success":
                row = (name, task_id, a["retval"], a["args"])
            elif name == "task_failure":
                row = (name, task_id, _error(a["exception"]), a["args"], a["traceback"] is not None, bool(a["einfo"]))
            elif name in ("on_failure", "on_retry"):
                row = (name, task_id, _error(a["exc"]), a["args"], "Traceback" in str(a["einfo"]))
            elif name == "task_retry":
                row = (name, task_id, _error(a["reason"]), "Traceback" in str(a["einfo"]))
            elif name == "task_postrun":
                retval = _error(a["retval"]) or a["retval"]
                row = (name, task_id, a["args"], retval, a["state"])
            elif name == "after_return":
                row = (name, task_id, _error(a["retval"]) or a["retval"], a["status"])
            elif name == "task_revoked":
                row = (name, task_id, a["terminated"], a["signum"], a["expired"])
            else:
                continue
            out[task].append(row)
        return out

    def expected(self) -> dict[str, list[tuple[Any, ...]]]:
        """Celery's order: task_prerun, before_start, the task, on_* then task_* of the outcome,
        after_return then task_postrun."""
        ids = self.ids

        def ran(name: str, args: list[Any]) -> list[tuple[Any, ...]]:
            return [("task_prerun", ids[name], args, {}), ("before_start", ids[name], args, {})]

        def failed(name: str, args: list[Any], error: tuple[str, str]) -> list[tuple[Any, ...]]:
            i = ids[name]
            return [
                ("on_failure", i, error, args, True),
                ("task_failure", i, error, args, True, True),
                ("after_return", i, error, states.FAILURE),
                ("task_postrun", i, args, error, states.FAILURE),
            ]

        flaky = ("KeyError", "'flaky 7'")
        i = ids["hooks.flaky"]
        return {
            "hooks.add": [
                *ran("hooks.add", [2, 3]),
                ("on_success", ids["hooks.add"], 5, [2, 3]),
                ("task_success", 5),
                ("after_return", ids["hooks.add"], 5, states.SUCCESS),
                ("task_postrun", ids["hooks.add"], [2, 3], 5, states.SUCCESS),
            ],
            "hooks.boom": [*ran("hooks.boom", []), *failed("hooks.boom", [], ("ValueError", "boom"))],
            "hooks.flaky": [
                *ran("hooks.flaky", [7]),
                ("on_retry", i, flaky, [7], True),
                ("task_retry", i, flaky, True),
                ("after_return", i, flaky, states.RETRY),
                ("task_postrun", i, [7], flaky, states.RETRY),
                *ran("hooks.flaky", [7]),
                *failed("hooks.flaky", [7], flaky),
            ],
            "hooks.late": [("task_revoked", ids["hooks.late"], False, None, True)],
        }
