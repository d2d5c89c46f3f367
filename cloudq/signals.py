"""Signals, named and called as Celery's (``from cloudq.signals import task_success``).

``@task_success.connect`` (or ``.connect(fn, sender=...)``) subscribes, ``.disconnect(fn)``
unsubscribes. Receivers are held strongly (Celery's ``weak=False``). A receiver that raises is
logged and skipped: it never loses the task nor stops the other receivers.

Where they fire: the ``task_*`` signals in the executor, so in every runtime (worker, Lambda,
Pub/Sub push) and in eager runs; ``before_task_publish``/``after_task_publish`` in the send path.
The ``worker_*`` signals in each runtime's lifecycle (``cloudq.runtime.lifecycle``): the container
worker around its run, its process-pool children around theirs, and the Lambda and push handlers
once per function instance (cold start), as docs/coming-from-celery.md tells.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, overload

log = logging.getLogger("cloudq.signals")

Receiver = Callable[..., Any]


def _matches(wanted: Any, sender: Any) -> bool:
    """A receiver connected with ``sender=`` gets that sender only: the object itself, or its
    name (a Task's name, which is what the publish signals send)."""
    if wanted is None or wanted is sender:
        return True
    name = getattr(sender, "name", sender)
    return isinstance(name, str) and (wanted == name or getattr(wanted, "name", None) == name)


class Signal:
    """One signal: ``connect``, ``disconnect``, ``send``."""

    def __init__(self, name: str, providing_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.providing_args = providing_args
        self._receivers: list[tuple[Receiver, Any]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"

    @overload
    def connect(self, receiver: Receiver, /, *, sender: Any = None, weak: bool = False) -> Receiver: ...

    @overload
    def connect(
        self, receiver: None = None, /, *, sender: Any = None, weak: bool = False
    ) -> Callable[[Receiver], Receiver]: ...

    def connect(self, receiver: Receiver | None = None, /, *, sender: Any = None, weak: bool = False) -> Any:
        """Subscribe ``receiver(sender=..., signal=..., **arguments)``; works as a decorator with or
        without arguments. ``weak`` is accepted and ignored: receivers are kept until disconnected."""

        def add(fn: Receiver) -> Receiver:
            with self._lock:
                if not any(r is fn and s is sender for r, s in self._receivers):
                    self._receivers.append((fn, sender))
            return fn

        return add if receiver is None else add(receiver)

    def disconnect(self, receiver: Receiver, sender: Any = None) -> bool:
        """Unsubscribe; True if it was subscribed."""
        with self._lock:
            before = len(self._receivers)
            self._receivers = [(r, s) for r, s in self._receivers if not (r is receiver and s is sender)]
            return len(self._receivers) != before

    @property
    def connected(self) -> bool:
        """Whether any receiver is subscribed: a sender with costly arguments asks first."""
        return bool(self._receivers)

    @property
    def receivers(self) -> list[Receiver]:
        return [r for r, _ in self._receivers]

    def send(self, sender: Any, **arguments: Any) -> list[tuple[Receiver, Any]]:
        """Call every matching receiver; each one's return value or the exception it raised
        (logged with its traceback) is in the answer, as Celery's ``send`` reports them."""
        if not self._receivers:
            return []
        answers: list[tuple[Receiver, Any]] = []
        for receiver, wanted in list(self._receivers):
            if not _matches(wanted, sender):
                continue
            try:
                answers.append((receiver, receiver(sender=sender, signal=self, **arguments)))
            except Exception as exc:
                log.exception("signal %s: receiver %r raised %s: the task goes on", self.name, receiver, exc)
                answers.append((receiver, exc))
        return answers


before_task_publish = Signal(
    "before_task_publish", ("body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy")
)
after_task_publish = Signal("after_task_publish", ("body", "exchange", "routing_key"))
task_prerun = Signal("task_prerun", ("task_id", "task", "args", "kwargs"))
task_postrun = Signal("task_postrun", ("task_id", "task", "args", "kwargs", "retval", "state"))
task_success = Signal("task_success", ("result",))
task_failure = Signal("task_failure", ("task_id", "exception", "args", "kwargs", "traceback", "einfo"))
task_retry = Signal("task_retry", ("request", "reason", "einfo"))
task_revoked = Signal("task_revoked", ("request", "terminated", "signum", "expired"))
task_unknown = Signal("task_unknown", ("name", "id", "message", "exc"))
# the runtimes' lifecycle (cloudq/runtime/lifecycle.py); sender: the worker or handler, None in pool children
worker_init = Signal("worker_init")
worker_process_init = Signal("worker_process_init")
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down", ("sig", "how", "exitcode"))
worker_shutdown = Signal("worker_shutdown")
worker_process_shutdown = Signal("worker_process_shutdown", ("pid", "exitcode"))

__all__ = [
    "Signal",
    "after_task_publish",
    "before_task_publish",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]
