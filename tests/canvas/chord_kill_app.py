"""The app of the chord kill test's worker process (``-A chord_kill_app:app``; broker and results
from CLOUDQ_BROKER / CLOUDQ_RESULTS): the worker SIGKILLs itself once at its first chord count,
right after a header task's result was written and before it is counted."""

from __future__ import annotations

import os
import signal
from typing import Any

from kill_app import journal

from cloudq import App

app = App("chord-kill", retry_backoff=0)
KILL_MARKER = os.environ.get("CANVAS_KILL_MARKER", "")


@app.task(name="ck.add")
def add(x: int, y: int) -> int:
    journal(f"add {x} {y}")
    return x + y


@app.task(name="ck.total")
def total(values: list[int]) -> int:
    journal(f"total {sum(values)}")
    return sum(values)


_increment = app.results.increment  # type: ignore[attr-defined]


def _die_at_the_first_count(key: str, by: int = 1, expires_at: float | None = None) -> Any:
    if KILL_MARKER and not os.path.exists(KILL_MARKER):
        open(KILL_MARKER, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return _increment(key, by, expires_at)


app.results.increment = _die_at_the_first_count  # type: ignore[attr-defined]
