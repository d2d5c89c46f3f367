"""The dashboard in a real browser on Pub/Sub + Firestore (Google's emulators over gRPC), as on
SQLite and SQS+DynamoDB: the queues page's counts (Pub/Sub cannot tell how many are ready: "?"),
a dead-lettered task with its reason, redrive from the page (a worker then runs it), revoke of a
queued task, and a task page with its timeline and canvas links. Screenshots:
build/dashboard-screenshots/*-pubsub.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import TOKEN, browser_page, chromium, screenshot, served

from cloudq import chain, states
from cloudq.testing.workers import run_burst

pytestmark = [pytest.mark.gcp, pytest.mark.slow, pytest.mark.timeout(300)]


def dead_cell(page: Any, queue: str = "default") -> str:
    return str(page.locator(f'tr[data-queue="{queue}"] td.dead').inner_text()).strip()


def test_dead_letter_redrive_revoke_and_task_page_on_pubsub_and_firestore(gcp_app: tuple[Any, Path]) -> None:
    executable = chromium()
    app, app_dir = gcp_app
    slow = app.tasks["slow"]
    tid = app.send_task("notify", ["ann@example.com"]).id
    last = chain(slow.s(1), slow.s()).apply_async()
    first = last.parent.id
    run_burst(app)
    assert app.results.get(tid).state == states.FAILURE
    with served(app_dir, {"CLOUDQ_DASHBOARD_TOKEN": TOKEN}) as url, browser_page(executable) as page:
        page.goto(f"{url}/login")
        page.fill('input[name="token"]', TOKEN)
        page.click('button:has-text("Log in")')
        assert "logged in" in page.locator("[role=status]").inner_text()
        assert dead_cell(page) == "1"
        assert page.locator('tr[data-queue="default"] td.ready').inner_text() == "?", "Pub/Sub has no backlog count"
        screenshot(page, "queues-pubsub")

        page.click('tr[data-queue="default"] td.dead a')
        row = page.locator(f'#dead-letters tr:has-text("{tid}")')
        assert "ValueError: mail server refused ***" in row.locator("td.reason").inner_text()
        assert "ann@example.com" not in page.content()
        screenshot(page, "dead-letters-pubsub")
        (app_dir / "broken").unlink()  # the task works again once redriven
        row.locator('input[name="id"]').check()
        page.click("#redrive-selected")
        assert "1 dead letter(s) put back" in page.locator("[role=status]").inner_text()
        page.goto(f"{url}/queues")
        assert dead_cell(page) == "0"
        run_burst(app)
        assert app.results.get(tid).state == states.SUCCESS, "a worker ran the redriven task"

        queued = app.send_task("slow", [5]).id
        page.goto(f"{url}/tasks")
        page.fill('#find input[name="id"]', queued)
        page.click("#find button")
        assert page.locator("#state").inner_text().strip().startswith("State: PENDING")
        page.click("#revoke button")
        assert "task revoked" in page.locator("[role=status]").inner_text()
        assert page.locator("#state").inner_text() == "REVOKED"
        run_burst(app)
        assert app.results.get(queued).state == states.REVOKED, "the revoked task never ran"

        page.goto(f"{url}/tasks/{last.id}")
        assert page.locator("#timeline").inner_text().count("SUCCESS") == 1
        assert "received and started (attempt 1)" in page.locator("#timeline").inner_text()
        screenshot(page, "task-pubsub")
        page.click(f'#links tr[data-role="parent"] a:has-text("{first}")')
        assert page.locator("h1").inner_text() == f"Task {first}"
        assert last.id in page.locator('#links tr[data-role="sent next"]').inner_text()
        page.goto(f"{url}/tasks/{tid}")
        assert "ann@example.com" not in page.content()
        assert page.locator("#state").inner_text() == "SUCCESS"
