"""The queues page's charts of the last hour: throughput (runs finished per minute by outcome) and
latency (p50/p95 of run time and queue wait) from the workers' presence records, and queue depth
from the dashboard's own samples. Drawn on the server as inline SVG (no script, nothing to
vendor) with a title and a table of the same figures for screen readers and copying.

No request of its own: the workers' series ride in the presence records the workers page reads
anyway (``runtime/series.py``), and depth is what the queues page's ``Broker.stats`` returned,
kept per minute (``DepthHistory``), so it covers the minutes someone had the page open.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..interfaces import UNKNOWN, Heartbeat, QueueStats
from ..runtime import series as ts

MAX_REMEMBERED = 1000  # workers' series kept (Lambda instances come and go): the least recent go first
WIDTH, HEIGHT = 540, 120  # the plot area in SVG units (two charts side by side at 1280 px)
LEFT, BOTTOM, TOP = 48, 20, 8  # margins: y labels, x labels
SLOT = WIDTH / ts.WINDOW_MIN
OUTCOME_COLORS = {"succeeded": "#2e7d32", "failed": "#b00020", "retried": "#ed6c02"}
LATENCY_LINES = (  # (name, figure, quantile, colour, dashed)
    ("run p50", "run", 0.5, "#1d3557", False),
    ("run p95", "run", 0.95, "#1d3557", True),
    ("wait p50", "wait", 0.5, "#00838f", False),
    ("wait p95", "wait", 0.95, "#00838f", True),
)
FLOOR_S = 0.01  # the latency chart's log scale starts at 10 ms (shorter runs are drawn there)
DEPTH_LINES = (
    ("ready", "ready", "#1d3557"),
    ("in flight", "in_flight", "#2e7d32"),
    ("delayed", "delayed", "#ed6c02"),
    ("dead", "dead_lettered", "#b00020"),
)


class SeriesMemory:
    """The latest series of each worker seen, kept ``WINDOW_MIN`` minutes after its newest
    figures: a worker that stopped (its record expires at once) still counts for the hour it
    ran. Only while this dashboard runs: one started later sees the workers alive now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: OrderedDict[str, tuple[int, ts.Series]] = OrderedDict()

    def update(self, beats: Iterable[Heartbeat]) -> None:
        with self._lock:
            for beat in beats:
                found = ts.decode(beat.info.get("series"))
                if found is not None:
                    self._series[beat.worker_id] = (ts.minute_of(beat.seen_at), found)
                    self._series.move_to_end(beat.worker_id)
            while len(self._series) > MAX_REMEMBERED:
                self._series.popitem(last=False)

    def merged(self, now: float) -> ts.Series | None:
        """Every remembered worker's figures added up; those whose newest minute left the
        window are forgotten."""
        oldest = ts.minute_of(now) - ts.WINDOW_MIN + 1
        with self._lock:
            for worker_id in [w for w, (seen, _) in self._series.items() if seen < oldest]:
                del self._series[worker_id]
            found = [series for _, series in self._series.values()]
        merged = ts.merge(found)
        return merged.since(oldest) if merged is not None else None


class DepthHistory:
    """The queues' counts as the queues page read them, the last reading of each minute, for
    ``WINDOW_MIN`` minutes: bounded by the app's queues, whatever the number of page loads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[str, OrderedDict[int, QueueStats]] = {}

    def add(self, stats: Iterable[QueueStats], now: float) -> None:
        minute = ts.minute_of(now)
        with self._lock:
            for row in stats:
                kept = self._minutes.setdefault(row.queue, OrderedDict())
                kept[minute] = row
                kept.move_to_end(minute)
                while kept and next(iter(kept)) <= minute - ts.WINDOW_MIN:
                    kept.popitem(last=False)

    def of(self, queue: str) -> dict[int, QueueStats]:
        with self._lock:
            return dict(self._minutes.get(queue, {}))


# -- drawing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One coloured part of a bar: ``name`` with ``value`` (tasks per minute)."""

    y: float
    height: float
    color: str
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    label: str  # "15:04" or "14:30-14:35 (5 min)"
    segments: tuple[Segment, ...]
    data: dict[str, str]  # data-* attributes: the exact figures, for tests and tools


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    color: str
    dashed: bool
    runs: tuple[str, ...]  # SVG polyline points, one string per run of adjacent minutes
    dots: tuple[tuple[float, float, str], ...]  # (x, y, tooltip)


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # the element id's stem
    title: str
    unit: str
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]  # the table fallback, oldest first
    bars: tuple[Bar, ...] = ()
    lines: tuple[Line, ...] = ()
    legend: tuple[tuple[str, str, bool], ...] = ()  # (name, colour, dashed)
    data: dict[str, str] = field(default_factory=dict)
    empty: str = ""  # shown instead of the plot when there is nothing to draw
    width: float = LEFT + WIDTH + 8
    height: float = TOP + HEIGHT + BOTTOM
    left: float = LEFT
    right: float = LEFT + WIDTH
    top: float = TOP
    bottom: float = TOP + HEIGHT


@dataclass(frozen=True, slots=True)
class QueueCharts:
    queue: str  # "" for all queues
    charts: tuple[Chart, ...]


def hhmm(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")


def nice_top(value: float) -> float:
    """The smallest of 1, 2, 5 times 10^n at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(float(step * power) for step in (1, 2, 5, 10) if step * power >= value)


def number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.3g} s"


Scale = Callable[[float], float]


class Frame:
    """The hour on screen: minute -> x, value -> y."""

    def __init__(self, now: float) -> None:
        self.last = ts.minute_of(now)
        self.first = self.last - ts.WINDOW_MIN + 1

    def x(self, minute: float) -> float:
        return LEFT + (minute - self.first) * SLOT

    def y(self, value: float, top: float) -> float:
        return TOP + HEIGHT - HEIGHT * min(value / top, 1.0)

    def x_ticks(self) -> tuple[tuple[float, str], ...]:
        marks = [m for m in range(self.first, self.last + 1) if m % 15 == 0]
        return tuple((self.x(m), hhmm(m)) for m in marks)

    def y_ticks(self, top: float, unit: str) -> tuple[tuple[float, str], ...]:
        return tuple((self.y(top * k / 2, top), number(top * k / 2) + unit) for k in (0, 1, 2))

    def spans(self, series: ts.Series, minutes: dict[int, ts.Minute]) -> list[tuple[int, int, ts.Minute]]:
        """(first minute on screen, minutes on screen, figures) of each start within the hour."""
        out = []
        for start in sorted(minutes):
            end = start + series.span(start)
            shown = max(start, self.first)
            if end > self.first and shown <= self.last:
                out.append((shown, min(end, self.last + 1) - shown, minutes[start]))
        return out


def span_label(start: int, span: int) -> str:
    return hhmm(start) if span == 1 else f"{hhmm(start)}-{hhmm(start + span)} ({span} min)"


def throughput(key: str, title: str, series: ts.Series, minutes: dict[int, ts.Minute], frame: Frame) -> Chart:
    """Stacked bars of runs finished per minute by outcome (a block's bar is its per-minute mean)."""
    spans = frame.spans(series, minutes)
    top = nice_top(max((figures.finished / span for _, span, figures in spans), default=0))
    bars, rows = [], []
    totals = dict.fromkeys(ts.OUTCOMES, 0)
    for start, span, figures in spans:
        y = TOP + HEIGHT
        segments = []
        for outcome in ts.OUTCOMES:
            value = getattr(figures, outcome)
            totals[outcome] += value
            if value:
                height = HEIGHT * min(value / span / top, 1.0)
                y -= height
                segments.append(Segment(y, height, OUTCOME_COLORS[outcome], outcome, value))
        label = span_label(start, span)
        data = {"start": hhmm(start), "minutes": str(span), **{o: str(getattr(figures, o)) for o in ts.OUTCOMES}}
        bars.append(Bar(frame.x(start), max(span * SLOT - 1, 1), label, tuple(segments), data))
        rows.append((label, *(str(getattr(figures, o)) for o in ts.OUTCOMES)))
    return Chart(
        key,
        title,
        "tasks/min",
        frame.x_ticks(),
        frame.y_ticks(top, ""),
        ("minute", *ts.OUTCOMES),
        tuple(rows),
        bars=tuple(bars),
        legend=tuple((o, OUTCOME_COLORS[o], False) for o in ts.OUTCOMES),
        data={**{o: str(n) for o, n in totals.items()}, "finished": str(sum(totals.values()))},
        empty="" if bars else "No run finished in the last hour.",
    )


def _line(
    name: str, color: str, dashed: bool, points: Sequence[tuple[int, int, float, str]], frame: Frame, y_of: Scale
) -> Line:
    """A polyline through (start, span, value, tooltip) points, broken where minutes are missing."""
    runs: list[list[str]] = []
    dots = []
    after = None
    for start, span, value, tip in points:
        x, y = frame.x(start + span / 2), y_of(value)
        if after != start:
            runs.append([])
        runs[-1].append(f"{x:.1f},{y:.1f}")
        dots.append((round(x, 1), round(y, 1), tip))
        after = start + span
    return Line(name, color, dashed, tuple(" ".join(run) for run in runs), tuple(dots))


def latency(key: str, title: str, series: ts.Series, minutes: dict[int, ts.Minute], frame: Frame) -> Chart:
    """p50 and p95 of run time and of queue wait, estimated from the merged buckets."""
    spans = frame.spans(series, minutes)
    values = {
        name: [(start, span, getattr(figures, part).quantile(q)) for start, span, figures in spans]
        for name, part, q, _, _ in LATENCY_LINES
    }
    highest = max((v for found in values.values() for _, _, v in found if v is not None), default=0.0)
    decades = max(math.ceil(math.log10(max(highest, FLOOR_S) / FLOOR_S)), 1)

    def y_of(value: float) -> float:  # log scale: ms and minutes on one chart
        return TOP + HEIGHT - HEIGHT * math.log10(max(value, FLOOR_S) / FLOOR_S) / decades

    lines = []
    for name, _, _, color, dashed in LATENCY_LINES:
        points = [(s, n, v, f"{name} {span_label(s, n)}: {seconds(v)}") for s, n, v in values[name] if v is not None]
        if points:
            lines.append(_line(name, color, dashed, points, frame, y_of))
    rows = tuple(
        (span_label(start, span), *(seconds(values[name][i][2]) for name, *_ in LATENCY_LINES))
        for i, (start, span, _) in enumerate(spans)
    )
    return Chart(
        key,
        title,
        "seconds, log scale",
        frame.x_ticks(),
        tuple((y_of(FLOOR_S * 10**k), seconds(FLOOR_S * 10**k)) for k in range(decades + 1)),
        ("minute", *(name for name, *_ in LATENCY_LINES)),
        rows,
        lines=tuple(lines),
        legend=tuple((name, color, dashed) for name, _, _, color, dashed in LATENCY_LINES),
        empty="" if lines else "No run finished in the last hour.",
    )


def depth(key: str, title: str, samples: dict[int, QueueStats], frame: Frame) -> Chart:
    """Messages ready, in flight, delayed and dead as sampled; a count the service cannot tell is
    left out (Pub/Sub's backlog)."""
    shown = {m: row for m, row in samples.items() if frame.first <= m <= frame.last}
    known = [
        getattr(row, attr) for row in shown.values() for _, attr, _ in DEPTH_LINES if getattr(row, attr) != UNKNOWN
    ]
    top = nice_top(max(known, default=0))
    lines = []
    for name, attr, color in DEPTH_LINES:
        points = [
            (m, 1, float(getattr(row, attr)), f"{name} {hhmm(m)}: {getattr(row, attr)}")
            for m, row in sorted(shown.items())
            if getattr(row, attr) != UNKNOWN
        ]
        if points:
            lines.append(_line(name, color, False, points, frame, lambda v: frame.y(v, top)))

    def cell(value: int) -> str:
        return "?" if value == UNKNOWN else str(value)

    rows = tuple(
        (hhmm(m), *(cell(getattr(row, attr)) for _, attr, _ in DEPTH_LINES)) for m, row in sorted(shown.items())
    )
    if not shown:
        empty = "Sampled while this page is open: nothing yet."
    elif not lines:
        empty = "The service reports none of these counts."
    else:
        empty = ""
    return Chart(
        key,
        title,
        "messages",
        frame.x_ticks(),
        frame.y_ticks(top, ""),
        ("minute", *(name for name, _, _ in DEPTH_LINES)),
        rows,
        lines=tuple(lines),
        legend=tuple((name, color, False) for name, _, color in DEPTH_LINES),
        data={"samples": str(len(shown))},
        empty=empty,
    )


def page_charts(series: ts.Series | None, depths: DepthHistory, queues: Sequence[str], now: float) -> list[QueueCharts]:
    """All queues' throughput and latency, then each queue's with its depth."""
    frame = Frame(now)
    found = series if series is not None else ts.Series(frame.first)
    total = found.total()
    out = [
        QueueCharts(
            "",
            (
                throughput("all-throughput", "Throughput, all queues", found, total, frame),
                latency("all-latency", "Latency, all queues", found, total, frame),
            ),
        )
    ]
    for i, queue in enumerate([*queues, *sorted(set(found.queues) - set(queues))]):
        minutes = found.queues.get(queue, {})
        charts = [
            throughput(f"q{i}-throughput", f"Throughput of {queue}", found, minutes, frame),
            latency(f"q{i}-latency", f"Latency of {queue}", found, minutes, frame),
        ]
        if queue in queues:
            charts.append(depth(f"q{i}-depth", f"Depth of {queue}", depths.of(queue), frame))
        out.append(QueueCharts(queue, tuple(charts)))
    return out
