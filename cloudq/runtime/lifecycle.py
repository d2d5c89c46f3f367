"""When the ``worker_*`` signals fire: one lifecycle for the three runtimes.

Celery's order: ``worker_init`` before the pool starts, ``worker_ready`` once the worker receives,
``worker_shutting_down`` when a stop begins, ``worker_shutdown`` after the drain; in each
process-pool child ``worker_process_init`` after the app is loaded and before its first task, and
``worker_process_shutdown`` when it exits. A function instance (Lambda, Pub/Sub push) has no start
of its own: its first invocation is its cold start (``init`` + ``ready``, once per instance), and
``worker_shutdown`` fires only where the runtime says the instance ends (ASGI lifespan shutdown).

Each signal fires at most once per lifecycle; a receiver that raises is logged by ``Signal.send``
and the runtime goes on.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .. import signals


class Lifecycle:
    """The ``worker_*`` signals of one worker or function instance, ``sender`` its runtime object."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender
        self._fired: set[str] = set()
        self._lock = threading.RLock()  # a receiver may start the runtime again: no deadlock

    def _once(self, signal: signals.Signal, **arguments: Any) -> None:
        with self._lock:
            if signal.name in self._fired:
                return
            self._fired.add(signal.name)
            signal.send(self.sender, **arguments)

    @property
    def started(self) -> bool:
        return signals.worker_ready.name in self._fired

    def init(self) -> None:
        self._once(signals.worker_init)

    def ready(self) -> None:
        self._once(signals.worker_ready)

    def start(self) -> None:
        """A function instance's cold start: ``worker_init`` then ``worker_ready``, the first time only."""
        if not self.started:  # the warm path takes no lock
            self.init()
            self.ready()

    def shutting_down(self, sig: str | None, how: str = "Warm", exitcode: int = 0) -> None:
        """A stop began (Celery's sender is the hostname; here the runtime object, like the others)."""
        self._once(signals.worker_shutting_down, sig=sig, how=how, exitcode=exitcode)

    def shutdown(self) -> None:
        """After the drain; only for a lifecycle that started (``worker_init`` fired)."""
        if signals.worker_init.name in self._fired:
            self._once(signals.worker_shutdown)


def process_init() -> None:
    """In a pool child, after the app is imported and before its first task (Celery's sender: None)."""
    signals.worker_process_init.send(None)


def process_shutdown(exitcode: int = 0) -> None:
    """In a pool child about to exit on its own (a killed child fires nothing, as in Celery)."""
    signals.worker_process_shutdown.send(None, pid=os.getpid(), exitcode=exitcode)
