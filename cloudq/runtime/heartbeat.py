"""Lease heartbeat: a message this worker holds never reaches the end of its lease.

Every sixth of a lease, messages with less than a third of their lease left get it renewed in
batched ``broker.extend`` calls, so a task longer than its lease is never handed to a second
worker while it runs. Buffered-but-unstarted messages are extended too: this worker will run
them as soon as a slot frees, and releases them at once when it stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..interfaces import Broker
from ..util.chunks import chunks
from .inbox import Held

log = logging.getLogger("cloudq.worker")

MIN_TICK_S = 0.05


class Heartbeat:
    def __init__(self, broker: Broker, lease_s: float, held: Callable[[], list[Held]]) -> None:
        self.broker = broker
        self.lease_s = lease_s
        self.margin_s = lease_s / 3
        self.tick_s = max(MIN_TICK_S, lease_s / 6)
        self.extended = 0  # messages extended so far: for logs and tests
        self._held = held
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudq-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.beat()

    def beat(self) -> None:
        now = time.monotonic()
        due = [held for held in self._held() if held.deadline - now <= self.margin_s]
        if not due:
            return
        for part in chunks(due, max(1, self.broker.limits.max_batch)):
            started = time.monotonic()
            try:
                self.broker.extend([held.delivery for held in part], self.lease_s)
            except Exception as exc:
                log.warning("extending %d lease(s) failed: %s: %s", len(part), type(exc).__name__, exc)
                continue
            for held in part:
                held.deadline = started + self.lease_s
            self.extended += len(part)
