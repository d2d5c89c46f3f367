"""Drive beat replicas with one injected clock: at every step all replicas tick at once (a barrier
starts them together), so they race on the same slots in the real result store."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from cloudq import App
from cloudq.beat import Beat
from cloudq.envelope import decode


class Clock:
    """Epoch seconds the test sets; it starts near the real time, since stores time claims out
    with their own clock."""

    def __init__(self) -> None:
        self.now = float(math.floor(time.time()))

    def __call__(self) -> float:
        return self.now


def race(beats: Sequence[Beat], clock: Clock, steps: int, step_s: float = 1.0) -> None:
    """Advance the clock ``steps`` times; after each, every beat ticks concurrently."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(beats))

    def run(beat: Beat) -> None:
        try:
            for _ in range(steps):
                barrier.wait(timeout=60)  # every replica has finished the previous tick
                if beat is beats[0]:
                    clock.now += step_s
                barrier.wait(timeout=60)  # the clock has moved for everyone
                beat.tick()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(b,)) for b in beats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors


def drain(app: App, queue: str = "default") -> Counter[str]:
    """Task ids of every message on ``queue`` (acked), counted."""
    ids: Counter[str] = Counter()
    while True:
        got = app.broker.receive(queue, 10, 60.0)
        if not got:
            return ids
        ids.update(decode(d.body).id for d in got)
        app.broker.ack(got)


def replicas(make: Callable[[], App], count: int, clock: Clock) -> list[Beat]:
    """``count`` beats, each on its own App (own connections), started at ``clock.now``."""
    beats = [Beat(make(), clock=clock, owner=f"replica-{i}") for i in range(count)]
    for beat in beats:
        beat.tick()  # starts from now: nothing is due yet
    return beats
