"""The tasks the canvas tests send (Celery's canvas guide's ``add``, plus probes that count calls)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from cloudq import App

calls: Counter[str] = Counter()  # "task:args" -> runs, across threads of the burst worker
errbacks: list[tuple[str | None, str, str]] = []  # (failed task id, exception repr, traceback head)
_lock = threading.Lock()


def _count(key: str) -> None:
    with _lock:
        calls[key] += 1


def register(app: App) -> dict[str, Any]:
    """Register the tasks on ``app`` (module-level names, so every app gets the same names)."""

    @app.task(name="canvas.add")
    def add(x: int, y: int) -> int:
        _count(f"add:{x},{y}")
        return x + y

    @app.task(name="canvas.pair")
    def pair(x: Any, y: Any) -> list[Any]:
        return [x, y]

    @app.task(name="canvas.fail")
    def fail(x: int) -> int:
        _count(f"fail:{x}")
        raise ValueError(f"boom {x}")

    @app.task(name="canvas.on_error")
    def on_error(request: Any, exc: BaseException, traceback: str) -> None:
        with _lock:
            errbacks.append((request.id, repr(exc), traceback.splitlines()[0] if traceback else ""))

    @app.task(name="canvas.failed_id")
    def failed_id(task_id: str) -> str:
        return f"failed:{task_id}"

    @app.task(name="canvas.add_once", idempotent=True)
    def add_once(x: int, y: int) -> int:
        _count(f"add_once:{x},{y}")
        return x + y

    return {"add": add, "pair": pair, "fail": fail}
