"""The queues page's charts (``cloudq/dashboard/charts.py``): the workers' series remembered past
their records, depth samples kept per minute, the chart figures drawn from them; and over HTTP on
SQLite, the charts after a real worker ran tasks (read from the SVG's data attributes and the
table fallback, never from pixels), still there once the worker has stopped."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from cloudq import states
from cloudq.dashboard import charts
from cloudq.dashboard.app import create_app
from cloudq.interfaces import UNKNOWN, Heartbeat, QueueStats
from cloudq.runtime import series as ts
from cloudq.testing.waiting import wait_for
from cloudq.testing.workers import running_worker

T0 = 1_800_000_000.0  # a minute boundary


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def beat(worker_id: str, seen_at: float, runs: dict[float, int], queue: str = "default") -> Heartbeat:
    """A presence record whose series has ``runs[t]`` successes at each time t (taking 0.1 s)."""
    clock = Clock()
    rolling = ts.Rolling(clock)
    for at, n in runs.items():
        clock.now = at
        for _ in range(n):
            rolling.record(queue, "succeeded", 0.1, 0.02)
    clock.now = seen_at
    return Heartbeat(worker_id, seen_at, {"series": rolling.encode()})


def finished(series: ts.Series | None) -> int:
    assert series is not None
    return sum(m.finished for m in series.total().values())


def test_a_worker_gone_still_counts_for_the_hour_it_ran() -> None:
    memory = charts.SeriesMemory()
    memory.update([beat("a", T0 + 30, {T0: 3}), beat("b", T0 + 30, {T0 + 10: 2})])
    assert finished(memory.merged(T0 + 60)) == 5
    memory.update([beat("b", T0 + 90, {T0 + 10: 2, T0 + 70: 4})])  # a's record expired; b beat again
    assert finished(memory.merged(T0 + 120)) == 3 + 2 + 4, "b's newer series replaces its older one"
    assert finished(memory.merged(T0 + 60 * 60)) == 4, "a's newest minute left the hour: forgotten"
    assert memory.merged(T0 + 2 * 60 * 60) is None
    memory.update([Heartbeat("old", T0, {}), Heartbeat("bad", T0, {"series": {"v": 1}})])  # no series: ignored
    assert memory.merged(T0) is None


def test_the_memory_keeps_at_most_so_many_workers(monkeypatch: Any) -> None:
    monkeypatch.setattr(charts, "MAX_REMEMBERED", 3)
    memory = charts.SeriesMemory()
    memory.update([beat(f"lambda-{i}", T0 + 1, {T0: 1}) for i in range(5)])
    assert finished(memory.merged(T0 + 1)) == 3


def test_depth_keeps_the_last_reading_of_each_minute_for_an_hour() -> None:
    depths = charts.DepthHistory()
    for second, ready in ((0, 5), (30, 7), (60, 9)):
        depths.add([QueueStats("default", ready, 1, 0, 2)], T0 + second)
    assert {m: s.ready for m, s in depths.of("default").items()} == {30_000_000: 7, 30_000_001: 9}
    depths.add([QueueStats("default", 1, 0, 0, 0)], T0 + 60 * 60)
    assert sorted(depths.of("default")) == [30_000_001, 30_000_060], "an hour on, the first minute is gone"
    assert depths.of("other") == {}


def test_the_charts_draw_the_merged_figures() -> None:
    now = T0 + 59 * 60 + 30
    memory = charts.SeriesMemory()
    memory.update(
        [beat("a", now, {T0 + 60: 4, now - 60: 2}), beat("b", now, {now: 3}, queue="low"), beat("c", now, {now: 1})]
    )
    depths = charts.DepthHistory()
    depths.add([QueueStats("default", 12, 3, UNKNOWN, 0), QueueStats("low", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)], now)
    groups = charts.page_charts(memory.merged(now), depths, ["default", "low"], now)
    assert [g.queue for g in groups] == ["", "default", "low"]
    overall, latency = groups[0].charts
    assert overall.data == {"succeeded": "10", "failed": "0", "retried": "0", "finished": "10"}
    block = next(bar for bar in overall.bars if bar.data["minutes"] == str(ts.BLOCK_MIN))
    assert block.data["succeeded"] == "4" and block.width == ts.BLOCK_MIN * charts.SLOT - 1, "an old block, 5 wide"
    assert block.segments[0].height == charts.HEIGHT * (4 / 5) / overall_top(overall), "drawn as its mean per minute"
    assert [row[1] for row in overall.rows][-2:] == ["2", "4"], "the table has the same figures, oldest first"
    assert {line.name for line in latency.lines} == {"run p50", "run p95", "wait p50", "wait p95"}
    assert [label for _, label in latency.y_ticks] == ["10 ms", "100 ms"], "a log scale from 10 ms to the max (0.1 s)"
    default_depth = groups[1].charts[2]
    assert {line.name for line in default_depth.lines} == {"ready", "in flight", "dead"}, "delayed is unknown"
    assert default_depth.rows == ((charts.hhmm(ts.minute_of(now)), "12", "3", "?", "0"),)
    assert groups[2].charts[2].empty == "The service reports none of these counts."
    quiet = charts.page_charts(None, charts.DepthHistory(), ["default"], now)
    assert quiet[0].charts[0].empty and quiet[1].charts[2].empty.startswith("Sampled while this page is open")


def overall_top(chart: charts.Chart) -> float:
    """The throughput chart's top value, read back from its highest y tick label."""
    return float(chart.y_ticks[-1][1])


def figure(html: str, key: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A chart's data attributes, and those of each of its bars."""
    found = re.search(rf'<figure class="chart" id="{key}"([^>]*)>(.*?)</figure>', html, re.S)
    assert found, f"no chart {key}"
    bars = re.findall(r'<g class="bar"([^>]*)>', found.group(2))
    return attributes(found.group(1)), [attributes(bar) for bar in bars]


def attributes(tag: str) -> dict[str, str]:
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', tag))


def test_the_queues_page_charts_what_a_real_worker_ran(app: Any) -> None:
    clock = Clock(0.0)  # the read cache's clock
    web = TestClient(create_app(app, clock=clock))
    ok = [app.send_task("slow", [i]).id for i in range(4)]
    bad = [app.send_task("lookup", ["k"]).id for _ in range(2)]  # KeyError, no retries: failed

    def done() -> bool:
        return all((record := app.results.get(tid)) is not None and record.terminal for tid in ok + bad)

    with running_worker(app) as worker:
        wait_for(done, timeout=30, what="the tasks done")
        presence = wait_for(lambda: worker.presence, what="the worker's presence")
        wait_for(lambda: presence.tracker.counts["failed"] == 2, what="the runs counted")
        assert presence.beat()  # the record as the next interval writes it
        html = web.get("/queues").text
    assert app.results.get(ok[0]).state == states.SUCCESS and app.results.get(bad[0]).state == states.FAILURE
    overall, bars = figure(html, "all-throughput")
    assert overall == {"failed": "2", "finished": "6", "retried": "0", "succeeded": "4"}
    assert sum(int(bar["succeeded"]) for bar in bars) == 4 and sum(int(bar["failed"]) for bar in bars) == 2
    assert figure(html, "q0-throughput")[0]["succeeded"] == "4"
    assert figure(html, "q0-depth")[0] == {"samples": "1"}
    assert '<title id="all-throughput-title">' in html and "Figures as a table" in html
    clock.now += 60  # past the read cache: the stopped worker's record is gone...
    assert "No worker alive" in web.get("/workers").text
    again = web.get("/queues").text
    assert figure(again, "all-throughput")[0]["finished"] == "6", "...but the dashboard remembers its hour"
