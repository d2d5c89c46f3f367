"""A worker's rolling series of the last hour, per minute and per queue: the runs finished by
outcome and their latencies, carried in its presence record (``info["series"]``) so the dashboard
charts throughput and latency with no write per task and no request beyond the presence write.

Latencies are kept as a count per bucket of ``BOUNDS_S`` plus the sum and the max, so figures of
many workers merge exactly (add the buckets, take the larger max) and p50/p95 can be estimated
from the merged buckets, as Prometheus's ``histogram_quantile`` does. Queue wait (started minus
``max(sent_at, eta)``) is measured on a message's first delivery only: a redelivery's wait would
count the retry backoff or the lost lease, not time waiting for a worker. The two clocks are the
producer's and the worker's: a skew shows as a shorter (never negative) wait.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

VERSION = 1  # of the encoded form: readers skip a series of another version
WINDOW_MIN = 60  # minutes kept: older ones are dropped at the next record or snapshot
# the record keeps the last FINE_MIN minutes one by one and older ones in aligned BLOCK_MIN-minute
# blocks (as RRD does): 24 rows an hour instead of 60, so a busy queue costs about 2 KB
FINE_MIN = 15
BLOCK_MIN = 5
MAX_QUEUES = 32  # queues kept per record; runs from more queues than this add to OTHER
OTHER = "(other queues)"
# bucket upper bounds in seconds (x4 steps from 50 ms to 5 min) and one open bucket past them: few,
# since the record carries them per minute and queue (p50/p95 are estimates within a bucket)
BOUNDS_S = (0.05, 0.2, 1.0, 5.0, 20.0, 60.0, 300.0)
OUTCOMES = ("succeeded", "failed", "retried")


def minute_of(epoch_s: float) -> int:
    return math.floor(epoch_s / 60)


MAX_SECONDS = 10 * 365 * 86400.0  # a latency figure is capped at ten years (an int of ms everywhere)


@dataclass(slots=True)
class Latency:
    """Durations seen: a count per bucket of ``BOUNDS_S`` (plus the open one), their sum and max
    in whole milliseconds (integers, so merging is exact)."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_S) + 1))
    sum_ms: int = 0
    max_ms: int = 0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def add(self, seconds: float) -> None:
        if not 0.0 <= seconds <= MAX_SECONDS:  # a NaN fails too: it reads as 0
            seconds = min(max(seconds, 0.0), MAX_SECONDS) if seconds == seconds else 0.0
        self.buckets[bisect.bisect_left(BOUNDS_S, seconds)] += 1
        ms = round(seconds * 1000)
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def merge(self, other: Latency) -> None:
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.sum_ms += other.sum_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """Seconds below which a share ``q`` of the durations fall, interpolated within its
        bucket (the open bucket ends at the max; no estimate exceeds the max); None when empty."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        top = self.max_ms / 1000
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                low = BOUNDS_S[i - 1] if i > 0 else 0.0
                high = min(BOUNDS_S[i] if i < len(BOUNDS_S) else top, top)
                low = min(low, high)
                return low + (high - low) * (rank - seen) / n
            seen += n
        return top

    def mean(self) -> float | None:
        total = self.count
        return self.sum_ms / 1000 / total if total else None

    def encode(self) -> list[Any]:
        """``[[buckets without trailing zeros], sum_ms, max_ms]``."""
        buckets = list(self.buckets)
        while buckets and buckets[-1] == 0:
            buckets.pop()
        return [buckets, self.sum_ms, self.max_ms]

    @classmethod
    def decode(cls, value: Any) -> Latency:
        buckets, sum_ms, max_ms = value
        counts = [int(n) for n in buckets][: len(BOUNDS_S) + 1]
        return cls(counts + [0] * (len(BOUNDS_S) + 1 - len(counts)), int(sum_ms), int(max_ms))

    def figures(self) -> dict[str, Any]:
        """What ``cloudq inspect stats --json`` prints: count, sum, max, mean, p50 and p95 in seconds."""
        p50, p95, mean = self.quantile(0.5), self.quantile(0.95), self.mean()
        return {
            "count": self.count,
            "sum_s": self.sum_ms / 1000,
            "max_s": self.max_ms / 1000,
            "mean_s": None if mean is None else round(mean, 3),
            "p50_s": None if p50 is None else round(p50, 3),
            "p95_s": None if p95 is None else round(p95, 3),
        }


@dataclass(slots=True)
class Minute:
    """One queue's figures of one minute: runs finished by outcome, their run time and the
    queue wait of the first deliveries among them."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    run: Latency = field(default_factory=Latency)
    wait: Latency = field(default_factory=Latency)

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.retried

    def merge(self, other: Minute) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.retried += other.retried
        self.run.merge(other.run)
        self.wait.merge(other.wait)

    def encode(self, offset: int) -> list[Any]:
        """``[minutes before the newest, succeeded, failed, retried, run, wait]`` (wait left out
        when no first delivery finished that minute)."""
        row = [offset, self.succeeded, self.failed, self.retried, self.run.encode()]
        if self.wait.count:
            row.append(self.wait.encode())
        return row

    def figures(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "run": self.run.figures(),
            "wait": self.wait.figures(),
        }


def fine_from(now: int) -> int:
    """The first minute kept one by one in a record written at minute ``now`` (block-aligned,
    so two records' blocks never straddle each other)."""
    return (now - FINE_MIN + 1) // BLOCK_MIN * BLOCK_MIN


def block_of(minute: int) -> int:
    return minute // BLOCK_MIN * BLOCK_MIN


@dataclass(slots=True)
class Series:
    """Figures by queue and start minute (epoch minutes): one minute each from ``fine`` on,
    ``BLOCK_MIN``-minute blocks (keyed by their first minute) before it. What readers work on."""

    fine: int
    queues: dict[str, dict[int, Minute]] = field(default_factory=dict)

    def span(self, start: int) -> int:
        """Minutes the figures keyed ``start`` cover."""
        return 1 if start >= self.fine else BLOCK_MIN

    def folded(self, fine: int) -> Series:
        """A copy whose minutes before ``fine`` (block-aligned, at or after ``self.fine``) are
        added into their blocks."""
        queues: dict[str, dict[int, Minute]] = {}
        for queue, minutes in self.queues.items():
            into = queues[queue] = {}
            for start, figures in minutes.items():
                into.setdefault(start if start >= fine else block_of(start), Minute()).merge(figures)
        return Series(fine, queues)

    def since(self, first: int) -> Series:
        """A copy without the figures that end before minute ``first`` (a block partly after it
        is kept whole)."""
        queues = {
            queue: kept
            for queue, minutes in self.queues.items()
            if (kept := {start: m for start, m in minutes.items() if start + self.span(start) > first})
        }
        return Series(self.fine, queues)

    def summed(self) -> Minute:
        """Every figure added up: the whole window, all queues."""
        out = Minute()
        for minutes in self.queues.values():
            for figures in minutes.values():
                out.merge(figures)
        return out

    def total(self) -> dict[int, Minute]:
        """Every queue's figures added up, per start minute."""
        out: dict[int, Minute] = {}
        for minutes in self.queues.values():
            for start, figures in minutes.items():
                out.setdefault(start, Minute()).merge(figures)
        return out


class Rolling:
    """The series one runtime records as its runs finish (``Tracker.run``): thread-safe, bounded
    to ``WINDOW_MIN`` minutes by ``MAX_QUEUES`` queues whatever the load."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[str, dict[int, Minute]] = {}
        self._last: tuple[str, int, Minute] | None = None  # the figures the last run went to

    def record(self, queue: str, outcome: str, run_s: float, wait_s: float | None, at: float | None = None) -> None:
        """One finished run (``outcome`` one of ``OUTCOMES``) in the current minute, or that of
        ``at`` (the clock's time it finished, when the caller has read it already)."""
        now = minute_of(self._clock() if at is None else at)
        with self._lock:
            last = self._last  # most runs go where the one before went: no lookups then
            if last is not None and last[0] == queue and last[1] == now:
                figures = last[2]
            else:
                figures = self._figures(queue, now)
                self._last = (queue, now, figures)
            if outcome == "succeeded":
                figures.succeeded += 1
            else:
                setattr(figures, outcome, getattr(figures, outcome) + 1)
            figures.run.add(run_s)
            if wait_s is not None:
                figures.wait.add(wait_s)

    def _figures(self, queue: str, now: int) -> Minute:
        if queue not in self._series and len(self._series) >= MAX_QUEUES:
            queue = OTHER
        minutes = self._series.setdefault(queue, {})
        figures = minutes.get(now)
        if figures is None:
            figures = minutes[now] = Minute()
            self._drop_old(now)
        return figures

    def _drop_old(self, now: int) -> None:
        self._last = None  # the figures it points to may be dropped
        oldest = now - WINDOW_MIN + 1
        for queue in list(self._series):
            minutes = self._series[queue]
            for minute in [m for m in minutes if m < oldest]:
                del minutes[minute]
            if not minutes:
                del self._series[queue]

    def snapshot(self) -> Series | None:
        """The figures as the record carries them (older minutes in blocks); None when nothing
        finished within the window."""
        now = minute_of(self._clock())
        with self._lock:
            self._drop_old(now)
            if not self._series:
                return None
            # folded into new figures (the live ones go on counting)
            return Series(now - WINDOW_MIN + 1, self._series).folded(fine_from(now))

    def encode(self) -> dict[str, Any] | None:
        """The presence record's ``series`` (None when nothing finished within the window):
        ``{"v": VERSION, "at": this epoch minute, "fine": first minute kept one by one,
        "q": {queue: [row, ...]}}``, each row starting with its minutes before ``at``."""
        now = minute_of(self._clock())
        kept = self.snapshot()
        if kept is None:
            return None
        return {
            "v": VERSION,
            "at": now,
            "fine": now - kept.fine,
            "q": {
                queue: [minutes[m].encode(now - m) for m in sorted(minutes, reverse=True)]
                for queue, minutes in kept.queues.items()
            },
        }


def decode(value: Any) -> Series | None:
    """A presence record's ``series`` as figures; None for none, another version or a malformed
    one (a record is written by another process: it never breaks a reader)."""
    if not isinstance(value, Mapping) or value.get("v") != VERSION:
        return None
    try:
        at = int(value["at"])
        queues = {
            str(queue): {at - int(row[0]): _minute(row) for row in rows} for queue, rows in dict(value["q"]).items()
        }
        return Series(at - int(value["fine"]), queues)
    except (KeyError, TypeError, ValueError):
        return None


def _minute(row: Any) -> Minute:
    _, succeeded, failed, retried, run, *wait = row
    return Minute(
        int(succeeded), int(failed), int(retried), Latency.decode(run), Latency.decode(wait[0]) if wait else Latency()
    )


def merge(many: Iterable[Series]) -> Series | None:
    """The sum of several workers' series (new figures: the inputs are not changed), folded at
    the latest of their block boundaries so every block covers the same minutes in all."""
    found = list(many)
    if not found:
        return None
    fine = max(series.fine for series in found)
    total = Series(fine)
    for series in found:
        for queue, minutes in series.folded(fine).queues.items():
            into = total.queues.setdefault(queue, {})
            for start, figures in minutes.items():
                into.setdefault(start, Minute()).merge(figures)
    return total


def figures(series: Series) -> dict[str, dict[str, Any]]:
    """The JSON form of ``cloudq inspect stats --json``: queue -> ISO start minute -> figures
    (with the minutes each covers)."""

    def iso(minute: int) -> str:
        return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ")

    return {
        queue: {iso(m): {"minutes": series.span(m), **minutes[m].figures()} for m in sorted(minutes)}
        for queue, minutes in sorted(series.queues.items())
    }
