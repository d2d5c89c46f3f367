"""The task page in a real browser on SQLite: a chord member's page shows the chord's progress and
links its body, whose page links back to the header task that sent it. Screenshots:
build/dashboard-screenshots/task-chord-*.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import browser_page, chromium, screenshot, served

from cloudq import chord
from cloudq.testing.workers import run_burst

pytestmark = pytest.mark.slow


def test_a_chord_members_page_links_its_chord_and_body(app: Any, app_dir: Path) -> None:
    executable = chromium()
    slow, lookup, total = app.tasks["slow"], app.tasks["lookup"], app.tasks["total"]
    body = chord([slow.s(1), slow.s(2), lookup.s("k")], total.s()).apply_async()
    header = body.parent
    run_burst(app)
    with served(app_dir, {"CLOUDQ_DASHBOARD_TOKEN": ""}) as url, browser_page(executable) as page:
        page.goto(f"{url}/tasks/{header.results[0].id}")
        assert page.locator("#progress").inner_text().startswith("3 of 3 ended (2 succeeded, 1 failed or revoked)")
        assert "FAILURE" in page.locator('#members tr[data-role="member 3"]').inner_text()
        screenshot(page, "task-chord-member")
        page.click('#members tr[data-role="chord body"] a')
        assert page.locator("h1").inner_text() == f"Task {body.id}"
        assert page.locator("#state").inner_text() == "FAILURE"
        assert "ChordError" in page.locator("#error").inner_text()
        parent = page.locator('#links tr[data-role="parent"]').inner_text()
        assert any(r.id in parent for r in header.results), "the header task whose end sent the body"
        screenshot(page, "task-chord-body")
