"""The dashboard in a real browser (Playwright + Debian's chromium) against a real ``cloudq
dashboard`` process on SQLite: log in with the token, see a dead letter with its reason, redrive
it from the page and see the count change (a worker then runs it), revoke a queued task; without
the token, and read-only, no action is offered. Screenshots: build/dashboard-screenshots/."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import TOKEN, browser_page, chromium, screenshot, served

from cloudq import states
from cloudq.testing import receive_until
from cloudq.testing.workers import run_burst

pytestmark = pytest.mark.slow


def dead_cell(page: Any, queue: str = "default") -> str:
    return str(page.locator(f'tr[data-queue="{queue}"] td.dead').inner_text()).strip()


def test_log_in_redrive_a_dead_letter_and_revoke_a_queued_task(app: Any, app_dir: Path) -> None:
    executable = chromium()
    [tid] = [app.send_task("notify", ["ann@example.com"]).id]
    run_burst(app)
    with served(app_dir, {"CLOUDQ_DASHBOARD_TOKEN": TOKEN}) as url, browser_page(executable) as page:
        page.goto(f"{url}/queues")
        assert dead_cell(page) == "1"
        assert page.locator("#redrive-all").count() == 0
        page.click("text=Log in to act")
        page.fill('input[name="token"]', "wrong")
        page.click('button:has-text("Log in")')
        assert page.locator("[role=alert]").inner_text().startswith("That is not")
        page.fill('input[name="token"]', TOKEN)
        page.click('button:has-text("Log in")')
        assert "logged in" in page.locator("[role=status]").inner_text()
        screenshot(page, "queues")
        page.click('tr[data-queue="default"] td.dead a')
        row = page.locator(f'#dead-letters tr:has-text("{tid}")')
        assert "ValueError: mail server refused ***" in row.locator("td.reason").inner_text()
        assert "ann@example.com" not in page.content()
        screenshot(page, "dead-letters")
        (app_dir / "broken").unlink()  # the task works again once redriven
        row.locator('input[name="id"]').check()
        page.click("#redrive-selected")
        assert "1 dead letter(s) put back" in page.locator("[role=status]").inner_text()
        page.goto(f"{url}/queues")
        assert dead_cell(page) == "0"
        assert page.locator('tr[data-queue="default"] td.ready').inner_text() == "1"
        run_burst(app)
        assert app.results.get(tid).state == states.SUCCESS, "a worker ran the redriven task"

        queued = app.send_task("slow", [5]).id
        page.click('header a:has-text("Tasks")')
        page.fill('#find input[name="id"]', queued)
        page.click("#find button")
        assert page.locator("#state").inner_text().strip().startswith("State: PENDING")
        page.click("#revoke button")
        assert "task revoked" in page.locator("[role=status]").inner_text()
        assert page.locator("#state").inner_text() == "REVOKED"
        screenshot(page, "task")
        run_burst(app)
        assert app.results.get(queued).state == states.REVOKED, "the revoked task never ran"
        page.goto(f"{url}/tasks/{tid}")
        screenshot(page, "task-success")
        for name in ("tasks", "workers"):
            page.goto(f"{url}/{name}")
            screenshot(page, name)


@pytest.mark.parametrize("args", [(), ("--read-only",)], ids=["no-token", "read-only"])
def test_without_a_token_or_read_only_no_action_is_offered(app: Any, app_dir: Path, args: tuple[str, ...]) -> None:
    executable = chromium()
    tid = app.send_task("notify", ["ann@example.com"]).id
    run_burst(app)
    env = {"CLOUDQ_DASHBOARD_TOKEN": TOKEN} if args else {"CLOUDQ_DASHBOARD_TOKEN": ""}
    with served(app_dir, env, *args) as url, browser_page(executable) as page:
        page.goto(f"{url}/queues/default/dead-letters")
        assert page.locator("#dead-letters").inner_text().count(tid) == 1
        assert page.locator("form[method=post]").count() == 0
        assert (
            page.locator("header")
            .inner_text()
            .strip()
            .endswith("read-only" if args else "view only (no token configured)")
        )
        page.goto(f"{url}/tasks/{tid}")
        assert page.locator("form[method=post]").count() == 0
        answer = page.request.post(f"{url}/tasks/{tid}/revoke", headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status == 403
        screenshot(page, f"task-{'read-only' if args else 'no-token'}")


SQS_APP = """
from cloudq import App

app = App("dash", broker="sqs://?prefix={prefix}&wait=1", results="dynamodb://{prefix}results", result_extended=True)


@app.task(name="notify")
def notify(email: str) -> str:
    return email
"""


@pytest.mark.aws
def test_queues_page_and_redrive_on_sqs_and_dynamodb(
    aws: Any, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executable = chromium()
    (tmp_path / "dashapp.py").write_text(SQS_APP.format(prefix=prefix))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("dashapp", None)
    import dashapp  # type: ignore[import-not-found]

    app = dashapp.app
    try:
        [a, b] = [app.send_task("notify", [f"user{i}@example.com"]).id for i in range(2)]
        got = receive_until(app.broker, "default", 2, lease_s=300, timeout=60)
        app.broker.dead_letter([d for d in got if a.encode() in d.body], "ValueError: mail server refused")
        app.broker.release([d for d in got if b.encode() in d.body])
        with served(tmp_path, {"CLOUDQ_DASHBOARD_TOKEN": TOKEN}) as url, browser_page(executable) as page:
            page.goto(f"{url}/login")
            page.fill('input[name="token"]', TOKEN)
            page.click('button:has-text("Log in")')
            assert dead_cell(page) == "1" and page.locator('tr[data-queue="default"] td.ready').inner_text() == "1"
            screenshot(page, "queues-sqs")
            page.click('tr[data-queue="default"] td.dead a')
            assert "ValueError: mail server refused" in page.locator(f'#dead-letters tr:has-text("{a}")').inner_text()
            page.click("#redrive-all")
            assert "1 dead letter(s) put back" in page.locator("[role=status]").inner_text()
            page.goto(f"{url}/queues")
            assert dead_cell(page) == "0" and page.locator('tr[data-queue="default"] td.ready').inner_text() == "2"
    finally:
        app.close()
        sys.modules.pop("dashapp", None)
