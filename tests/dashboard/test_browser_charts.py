"""The queues page's charts in a real browser (Playwright + Debian's chromium) against a real
``cloudq dashboard`` process on SQLite, after a real worker ran tasks: the SVG's data attributes
and its table fallback carry the counts (never read from pixels), and once the worker has
stopped the dashboard still charts its hour. Screenshot: build/dashboard-screenshots/queues-charts.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import browser_page, chromium, screenshot, served

from cloudq.testing.waiting import wait_for
from cloudq.testing.workers import running_worker

pytestmark = pytest.mark.slow


def test_the_charts_show_what_a_worker_ran(app: Any, app_dir: Path) -> None:
    executable = chromium()
    ok = [app.send_task("slow", [i]).id for i in range(5)]
    bad = [app.send_task("lookup", ["k"]).id for _ in range(2)]  # KeyError, no retries: failed

    def done() -> bool:
        return all((record := app.results.get(tid)) is not None and record.terminal for tid in ok + bad)

    with served(app_dir, {"CLOUDQ_DASHBOARD_TOKEN": ""}) as url, browser_page(executable) as page:
        with running_worker(app) as worker:
            wait_for(done, timeout=30, what="the tasks done")
            presence = wait_for(lambda: worker.presence, what="the worker's presence")
            wait_for(lambda: presence.tracker.counts["failed"] == 2, what="the runs counted")
            assert presence.beat()  # the record as the next interval writes it
            page.goto(f"{url}/queues")
            overall = page.locator("#all-throughput")
            assert [overall.get_attribute(f"data-{k}") for k in ("finished", "succeeded", "failed")] == ["7", "5", "2"]
            bars = overall.locator("g.bar")
            assert sum(int(bars.nth(i).get_attribute("data-succeeded") or 0) for i in range(bars.count())) == 5
            assert (overall.locator("svg[role=img] > title").text_content() or "").startswith("Throughput, all queues")
            overall.locator("summary").click()  # the table fallback
            rows = overall.locator("table.figures tbody tr")
            table = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
            assert [sum(int(row[col]) for row in table) for col in (1, 2, 3)] == [5, 2, 0]  # succeeded failed retried
            latency = page.locator("#all-latency")
            assert latency.locator("g.line").count() == 4, "run and wait, p50 and p95"
            assert page.locator("#q0-depth").get_attribute("data-samples") == "1"
            screenshot(page, "queues-charts")

        def gone() -> bool:
            page.goto(f"{url}/workers")
            return "No worker alive" in page.locator("#workers").inner_text()

        wait_for(gone, timeout=30, interval=0.5, what="the stopped worker's record gone from the dashboard")
        page.goto(f"{url}/queues")
        assert page.locator("#all-throughput").get_attribute("data-finished") == "7", "remembered for the hour"
