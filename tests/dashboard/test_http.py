"""The dashboard over HTTP (Starlette's TestClient) on SQLite: every page, the token and CSRF
checks, read-only mode, redaction of arguments, the read cache, and the actions' effects."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import pytest
from dashboard_browser import TOKEN
from starlette.testclient import TestClient

from cloudq import states
from cloudq.dashboard.app import create_app
from cloudq.dashboard.auth import COOKIE
from cloudq.interfaces import Heartbeat, TaskIndex, TaskSummary
from cloudq.testing.workers import run_burst

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def client(app: Any, token: str | None = TOKEN, **options: Any) -> TestClient:
    return TestClient(create_app(app, token=token, **options), follow_redirects=False)


def logged_in(app: Any, **options: Any) -> tuple[TestClient, str]:
    """A client with a session cookie and that session's CSRF token."""
    web = client(app, **options)
    answer = web.post("/login", data={"token": TOKEN})
    assert answer.status_code == 303, answer.text
    found = CSRF.search(web.get("/queues").text)
    assert found, "a logged-in page carries the CSRF token"
    return web, found.group(1)


def dead_count(web: TestClient, queue: str = "default") -> str:
    found = re.search(
        rf'<tr data-queue="{queue}">.*?class="n dead"><a [^>]*>([^<]+)</a>', web.get("/queues").text, re.S
    )
    assert found, "the queues page lists the queue"
    return found.group(1)


def failed(app: Any, *emails: str) -> list[str]:
    """One dead-lettered ``notify`` per email (the app's marker makes it raise): their task ids."""
    ids = [app.send_task("notify", [email], {"count": 2}).id for email in emails]
    run_burst(app)
    return ids


def test_every_page_renders_on_sqlite(app: Any) -> None:
    [tid] = failed(app, "ann@example.com")
    app.send_task("slow", [1])
    web = client(app)
    queues = web.get("/queues")
    assert queues.status_code == 200
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', queues.text, re.S)
    assert row is not None
    assert re.findall(r'class="n \w+">(?:<a [^>]*>)?(\d+)', row.group(1)) == ["1", "0", "0", "1"]
    letters = web.get("/queues/default/dead-letters")
    assert letters.status_code == 200 and tid in letters.text and "ValueError" in letters.text
    page = web.get(f"/tasks/{tid}")
    assert page.status_code == 200
    assert 'id="state" class="FAILURE"' in page.text and "Traceback" in page.text and "attempts" in page.text
    for path in ("/tasks", "/workers", "/login"):
        assert web.get(path).status_code == 200, path
    assert web.get("/").headers["location"] == "/queues"


def test_search_by_id_opens_the_task_page_even_without_a_record(app: Any) -> None:
    web = client(app)
    answer = web.get("/tasks", params={"id": " abc123 "})
    assert answer.status_code == 303 and answer.headers["location"] == "/tasks/abc123"
    page = web.get("/tasks/abc123")
    assert page.status_code == 200 and "PENDING" in page.text
    assert web.get("/tasks", params={"id": "x" * 201}).status_code == 400


def test_an_unknown_queue_is_404_and_never_created(app: Any) -> None:
    web, csrf = logged_in(app)
    assert web.get("/queues/nope/dead-letters").status_code == 404
    assert web.post("/queues/nope/dead-letters/redrive", data={"csrf_token": csrf, "all": "1"}).status_code == 404
    assert "nope" not in web.get("/queues").text


ACTIONS = (
    ("/queues/default/dead-letters/redrive", {"all": "1"}),
    ("/queues/default/dead-letters/purge", {"all": "1", "confirm": "yes"}),
    ("/tasks/t1/revoke", {}),
)


@pytest.mark.parametrize(
    "options", [{"token": None}, {"token": TOKEN, "read_only": True}], ids=["no-token", "read-only"]
)
def test_without_a_token_or_read_only_actions_are_absent_and_refused(app: Any, options: dict[str, Any]) -> None:
    [tid] = failed(app, "ann@example.com")
    web = TestClient(create_app(app, **options), follow_redirects=False)
    for path in ("/queues/default/dead-letters", f"/tasks/{tid}", "/tasks/queued-1"):
        text = web.get(path).text
        assert 'method="post"' not in text, f"{path} shows an action"
        assert "Log in" not in text
    assert web.post("/login", data={"token": TOKEN}).status_code == 403
    for path, data in ACTIONS:
        assert web.post(path, data=data, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 403, path
    assert dead_count(web) == "1"


def test_actions_need_a_login_and_the_sessions_csrf_token(app: Any) -> None:
    failed(app, "ann@example.com")
    web = client(app)
    page = web.get("/queues/default/dead-letters").text
    assert "redrive-all" not in page and 'href="/login"' in page
    for path, data in ACTIONS:
        assert web.post(path, data=data).status_code == 403, path
    wrong = web.post("/login", data={"token": "guess"})
    assert wrong.status_code == 403 and COOKIE not in wrong.headers.get("set-cookie", "")
    web, csrf = logged_in(app)
    for path, data in ACTIONS:
        assert web.post(path, data=data).status_code == 403, f"{path} without the CSRF token"
        assert web.post(path, data={**data, "csrf_token": "forged"}).status_code == 403, f"{path} with a forged one"
    other, _ = logged_in(app)  # another session's CSRF token is not this one's
    assert other.cookies.get(COOKIE) != web.cookies.get(COOKIE)
    assert dead_count(web) == "1"
    done = web.post("/queues/default/dead-letters/redrive", data={"csrf_token": csrf, "all": "1"})
    assert done.status_code == 303 and "done=redriven" in done.headers["location"] and "n=1" in done.headers["location"]
    assert dead_count(web) == "0"
    out = web.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert web.post(ACTIONS[2][0], data={"csrf_token": csrf}).status_code == 403, "the session is gone"


def test_a_bearer_header_acts_without_a_session(app: Any) -> None:
    tid = app.send_task("slow", [1]).id
    web = client(app)
    assert web.post(f"/tasks/{tid}/revoke", headers={"authorization": "Bearer nope"}).status_code == 403
    assert web.post(f"/tasks/{tid}/revoke", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 303
    assert app.results.get(tid).state == states.REVOKED


def test_revoke_from_the_page_stops_a_queued_task(app: Any) -> None:
    tid = app.send_task("slow", [7]).id
    web, csrf = logged_in(app)
    assert 'id="revoke"' in web.get(f"/tasks/{tid}").text
    done = web.post(f"/tasks/{tid}/revoke", data={"csrf_token": csrf})
    assert done.headers["location"] == f"/tasks/{tid}?done=revoked"
    run_burst(app)
    record = app.results.get(tid)
    assert record.state == states.REVOKED and record.result is None, "the task never ran"
    page = web.get(done.headers["location"]).text
    assert "task revoked" in page and 'id="revoke"' not in page, "a finished task offers no revoke"


def test_purge_needs_the_confirmation_box(app: Any) -> None:
    failed(app, "ann@example.com", "bob@example.com")
    web, csrf = logged_in(app)
    assert web.post("/queues/default/dead-letters/purge", data={"csrf_token": csrf, "all": "1"}).status_code == 400
    assert dead_count(web) == "2"
    done = web.post("/queues/default/dead-letters/purge", data={"csrf_token": csrf, "all": "1", "confirm": "yes"})
    assert done.status_code == 303 and "n=2" in done.headers["location"]
    assert dead_count(web) == "0"


def test_redrive_of_ticked_ids_moves_only_those(app: Any) -> None:
    failed(app, "ann@example.com", "bob@example.com")
    web, csrf = logged_in(app)
    ids = re.findall(r'name="id" value="([^"]+)"', web.get("/queues/default/dead-letters").text)
    assert len(ids) == 2
    assert web.post("/queues/default/dead-letters/redrive", data={"csrf_token": csrf}).status_code == 400
    done = web.post("/queues/default/dead-letters/redrive", data={"csrf_token": csrf, "id": ids[0]})
    assert "n=1" in done.headers["location"]
    assert dead_count(web) == "1"


@pytest.mark.parametrize("action", ["redrive", "purge"])
def test_all_on_a_filtered_page_acts_only_on_what_matches(app: Any, action: str) -> None:
    failed(app, "ann@example.com", "bob@example.com")
    app.send_task("lookup", ["k1"])
    run_burst(app)
    web, csrf = logged_in(app)
    page = web.get("/queues/default/dead-letters", params={"error_type": "KeyError"}).text
    assert page.count('name="id"') == 1 and "Redrive all matching" in page
    form = {"csrf_token": csrf, "all": "1", "error_type": "KeyError", "task": "", "confirm": "yes"}
    done = web.post(f"/queues/default/dead-letters/{action}", data=form)
    assert done.status_code == 303 and "n=1" in done.headers["location"], done.headers["location"]
    assert dead_count(web) == "2", "the ValueErrors the filter left out stay"


def test_no_token_in_pages_cookies_or_headers(app: Any) -> None:
    failed(app, "ann@example.com")
    web, _ = logged_in(app)
    assert web.cookies.get(COOKIE) not in (None, TOKEN)
    for path in ("/queues", "/queues/default/dead-letters", "/tasks", "/workers", "/login"):
        answer = web.get(path)
        assert TOKEN not in answer.text and TOKEN not in str(answer.headers), path
        assert "k3y" not in answer.text, "the signing key is never shown"
        assert (
            answer.headers["x-frame-options"] == "DENY"
            and "default-src 'none'" in answer.headers["content-security-policy"]
        )


def test_arguments_are_redacted_by_default_in_task_pages_and_reasons(app: Any) -> None:
    [tid] = failed(app, "ann@example.com")
    web = client(app)
    page = web.get(f"/tasks/{tid}").text
    assert "ann@example.com" not in page
    assert re.search(r"<td>email</td><td>str</td><td>\*\*\*</td>", page)
    assert re.search(r"<td>count</td><td>int</td><td>\*\*\*</td>", page)
    assert "mail server refused ***" in page, "the error quoting an argument is scrubbed"
    letters = web.get("/queues/default/dead-letters").text
    assert "ann@example.com" not in letters and "mail server refused ***" in letters


def test_dashboard_redact_names_or_nothing(app_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.syspath_prepend(str(app_dir))
    for redact, email_shown, count_shown in ((["email"], False, True), (False, True, True)):
        sys.modules.pop("dashapp", None)
        import dashapp  # type: ignore[import-not-found]

        app = dashapp.app
        app.conf.update(dashboard_redact=redact)
        try:
            [tid] = failed(app, "ann@example.com")
            page = client(app).get(f"/tasks/{tid}").text
            assert ("&#39;ann@example.com&#39;" in page) is email_shown, redact
            assert ("<td>count</td><td>int</td><td>2</td>" in page) is count_shown, redact
        finally:
            app.close()
            (app_dir / "q.db").unlink()
            (app_dir / "r.db").unlink()


class CountingStats:
    """The app's own broker, counting ``stats`` calls (how many backend reads pages cost)."""

    def __init__(self, broker: Any) -> None:
        self.broker, self.calls = broker, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.broker, name)

    def stats(self, queue: str) -> Any:
        self.calls += 1
        return self.broker.stats(queue)


def test_backend_reads_are_cached_whatever_the_number_of_tabs(app: Any) -> None:
    now = [1000.0]
    counting = app._broker = CountingStats(app.broker)
    web = TestClient(create_app(app, cache_s=5.0, clock=lambda: now[0]))
    for _ in range(20):
        assert web.get("/queues").status_code == 200
    assert counting.calls == len(app.queues()) == 1
    now[0] += 4.9
    web.get("/queues")
    assert counting.calls == 1
    now[0] += 0.2
    web.get("/queues")
    assert counting.calls == 2, "a read older than cache_s is made again"


class Listed:
    """The app's store plus the optional listings (TaskIndex, HeartbeatStore) with given rows."""

    def __init__(self, store: Any, recent: Sequence[TaskSummary], alive: Sequence[Heartbeat]) -> None:
        self.store, self.rows, self.beats = store, list(recent), list(alive)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def recent(self, states: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[TaskSummary]:
        return [r for r in self.rows if not states or r.state in states][:limit]

    def alive(self) -> list[Heartbeat]:
        return self.beats

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        self.beats.append(heartbeat)


class Bare:
    """The app's store with only the ResultStore methods: no listings."""

    def __init__(self, store: Any) -> None:
        self.get, self.set, self.claim, self.forget, self.close = (
            store.get,
            store.set,
            store.claim,
            store.forget,
            store.close,
        )


def test_listings_show_when_the_store_has_them(app: Any) -> None:
    now = time.time()
    rows = [
        TaskSummary("ok-1", "slow", states.SUCCESS, now - 5),
        TaskSummary("bad-1", "notify", states.FAILURE, now - 60),
    ]
    info = {
        "hostname": "host-a",
        "queues": ["default", "mail"],
        "concurrency": 4,
        "active": [{"id": "run-1", "name": "slow", "queue": "default", "started": now - 2}],
        "active_count": 1,
        "counts": {"succeeded": 7, "failed": 1},
    }
    beat = Heartbeat("cloudq@host-a", now - 3, info)
    app._results = Listed(app.results, rows, [beat])
    web = client(app)
    tasks = web.get("/tasks").text
    assert tasks.index("bad-1") < tasks.index("ok-1"), "failures first"
    assert "ok-1" not in web.get("/tasks", params={"state": "FAILURE"}).text
    assert "bad-1" not in web.get("/tasks", params={"name": "slo"}).text
    workers = web.get("/workers").text
    assert "cloudq@host-a" in workers and 'id="no-presence"' not in workers
    assert '<a href="/tasks/run-1">slow</a>' in workers and "succeeded: 7" in workers
    assert "<strong>queues</strong>: default, mail" in workers and "<strong>concurrency</strong>: 4" in workers


def test_listings_are_hidden_with_a_reason_when_the_store_lacks_them(app: Any) -> None:
    app._results = Bare(app.results)
    web = client(app)
    assert 'id="no-index"' in web.get("/tasks").text
    assert 'id="no-presence"' in web.get("/workers").text
    assert web.get("/tasks", params={"id": "abc"}).status_code == 303, "search by id still works"


def test_the_apps_own_store_lists_tasks_or_says_why_not(app: Any) -> None:
    """On SQLite's own store: listed once it has a task index (the presence work), explained before."""
    [tid] = failed(app, "ann@example.com")
    page = client(app).get("/tasks").text
    if isinstance(app.results, TaskIndex):
        assert tid in page and 'class="FAILURE"' in page
    else:
        assert 'id="no-index"' in page and tid not in page


def test_missing_chromium_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import dashboard_browser

    monkeypatch.setattr(dashboard_browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"need chromium \(apt-get install chromium\)"):
        dashboard_browser.chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="scripts/test.sh installs them in CI"):
        dashboard_browser.chromium()
