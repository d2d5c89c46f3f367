"""The tasks the group/chord tests add to the canvas tests' app (tests/canvas/conftest.py)."""

from __future__ import annotations

from cloudq import App

BODY_RUNS: list[int] = []  # sums the chord bodies ran with, across the burst worker's threads


def register_sums(app: App) -> App:
    @app.task(name="t.tsum")
    def tsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(name="t.body")
    def body(numbers: list[int]) -> int:
        BODY_RUNS.append(sum(numbers))
        return sum(numbers)

    BODY_RUNS.clear()
    return app
