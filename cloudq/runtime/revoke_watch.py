"""The worker's revoke poll: how a revocation reaches messages it already holds.

Every ``interval_s`` while the worker holds messages, one batched read (``RevokeCheck.read``) of
their task ids: buffered ones found REVOKED are skipped when a slot takes them; running ones whose
record asks to terminate are killed where the pool can (the process pool's child). Threads and
coroutines cannot be stopped: a warning says so, the task runs to its end and its late result is
not recorded over the REVOKED record. Cost: one read per interval per busy worker, none when idle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..control import terminate_signal
from ..interfaces import Delivery
from .inbox import Held
from .pools import Runner
from .revocations import KnownRevoked, RevokeCheck, task_id_of

log = logging.getLogger("cloudq.worker")


class RevokeWatch:
    def __init__(
        self,
        check: RevokeCheck,
        known: KnownRevoked,
        interval_s: float,
        held: Callable[[], list[Held]],
        running: Callable[[], list[tuple[Delivery, Runner]]],
    ) -> None:
        self.check = check
        self.known = known
        self.interval_s = interval_s
        self.polls = 0  # reads made so far: for logs and tests
        self._held = held
        self._running = running
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudq-revoke-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:
                log.exception("revoke poll failed; trying again in %ss", self.interval_s)

    def poll(self) -> None:
        held = self._held()
        ids = list(dict.fromkeys(i for i in (task_id_of(h.delivery) for h in held) if i is not None))
        if not ids:
            return
        self.polls += 1
        revoked = self.check.read(ids)
        if not revoked:
            return
        running = [(task_id_of(delivery) or "", delivery, runner) for delivery, runner in self._running()]
        started = {task_id for task_id, _, _ in running}
        self.known.add({i: r for i, r in revoked.items() if i not in started})  # skipped when taken
        for task_id, delivery, runner in running:
            record = revoked.get(task_id)
            signum = terminate_signal(record) if record is not None else None
            if record is None or signum is None:
                continue
            if runner.can_terminate:
                runner.terminate(delivery, signum, record)
            elif task_id not in self._warned:
                self._warned.add(task_id)
                log.warning(
                    "cannot terminate task %s: this pool cannot stop a running task (only --pool process can); "
                    "it runs to its end and its result is not recorded over the REVOKED record",
                    task_id,
                )
