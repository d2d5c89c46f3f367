"""Apps for the group/chord/map tests: memory and SQLite, each run by a real burst worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudq import App


def make_app(kind: str, tmp_path: Path, **config: Any) -> App:
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'cloudq.db'}"
    app = App(f"canvas-{kind}", broker=url, results=url, retry_backoff=0, **config)

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.tsum")
    def tsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(name="t.boom")
    def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    return app
