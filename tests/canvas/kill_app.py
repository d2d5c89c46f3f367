"""The app of the kill test's worker process (``-A kill_app:app``; broker and results from
CLOUDQ_BROKER / CLOUDQ_RESULTS): its first chain step's worker SIGKILLs itself once, right after
the step's result is written and before its outcome is settled (``task_success`` fires there)."""

from __future__ import annotations

import os
import signal
from typing import Any

from cloudq import App, signals

app = App("kill", retry_backoff=0)
KILL_MARKER = os.environ.get("CANVAS_KILL_MARKER", "")


def journal(line: str) -> None:
    path = os.environ.get("CANVAS_JOURNAL")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


@app.task(name="kill.first")
def first(x: int, y: int) -> int:
    journal(f"first {x} {y}")
    return x + y


@app.task(name="kill.then")
def then(x: int, y: int) -> int:
    journal(f"then {x} {y}")
    return x + y


@signals.task_success.connect
def _die_once(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) == "kill.first" and KILL_MARKER and not os.path.exists(KILL_MARKER):
        open(KILL_MARKER, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
