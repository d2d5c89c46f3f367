"""One total deadline for a call a producer waits on (``send()``, a result read).

Every request made inside it gets what is left as its gRPC timeout and as its retry budget, so a
partition ends in BackendUnavailable on time instead of after one full ``timeout`` per request.
Long-running consumer pulls never use it: they keep their own timeouts.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from cloudq.errors import BackendUnavailable

from .errors import Service

if TYPE_CHECKING:
    from google.api_core.retry import Retry


class Deadline:
    def __init__(self, seconds: float, service: Service) -> None:
        self.seconds = seconds
        self.service = service
        self.ends = time.monotonic() + seconds

    def left(self, action: str) -> float:
        """Seconds left; BackendUnavailable once there are none."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise self.passed(action)
        return left

    def request(self, retry: Retry, action: str) -> dict[str, Any]:
        """``retry=`` and ``timeout=`` for one request of the Google clients, within what is left."""
        left = self.left(action)
        return {"retry": retry.with_timeout(left), "timeout": left}

    def passed(self, action: str) -> BackendUnavailable:
        hint = "is the emulator running?" if os.environ.get(self.service.emulator_env) else "check the network"
        return BackendUnavailable(
            f"cannot reach {self.service.where()} within send_timeout={self.seconds:g}s while {action}; {hint}"
        )
