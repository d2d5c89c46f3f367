"""Celery's ``--autoscale MAX,MIN``: how many pool slots should run now.

Celery's rule: aim for as many slots as messages the worker holds (buffered and running), between
MIN and MAX; grow at once, shrink only after ``keepalive_s`` without growing, so a short lull
does not tear down slots (and process-pool children) that the next burst needs. The worker's
buffer follows the live slot count (prefetch x live), so what it leases follows what can run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import ConfigurationError

log = logging.getLogger("cloudq.worker")

KEEPALIVE_S = 30.0  # Celery's AUTOSCALE_KEEPALIVE
INTERVAL_S = 1.0  # how often the worker looks (Celery's autoscaler too)


def parse_autoscale(value: str, where: str) -> tuple[int, int]:
    """``"MAX,MIN"`` (or ``"MAX"``: MIN 1) as ``(max, min)``; one-line ConfigurationError otherwise."""
    parts = [part.strip() for part in value.split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise ConfigurationError(f"{where} takes MAX,MIN (two whole numbers, e.g. 10,3), got {value!r}")
    high, low = numbers[0], numbers[1] if len(numbers) == 2 else 1
    if low < 1:
        raise ConfigurationError(
            f"{where}: MIN must be at least 1 (cloudq's idle slot is the one that receives), got {value!r}"
        )
    if high < low or high > 1024:
        raise ConfigurationError(f"{where}: MAX must be between MIN and 1024, got {value!r}")
    return high, low


class Autoscaler:
    def __init__(
        self,
        maximum: int,
        minimum: int,
        keepalive_s: float = KEEPALIVE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.keepalive_s = keepalive_s
        self._clock = clock
        self._last_grow = clock()

    def target(self, live: int, held: int) -> int:
        """The slot count to have now, with ``live`` slots and ``held`` messages (buffered + running)."""
        want = max(self.minimum, min(self.maximum, held))
        if want > live:
            self._last_grow = self._clock()
            log.info("autoscale: growing from %d to %d slots (%d messages held)", live, want, held)
            return want
        if want < live and self._clock() - self._last_grow >= self.keepalive_s:
            log.info("autoscale: shrinking from %d to %d slots (%d messages held)", live, want, held)
            return want
        return live
