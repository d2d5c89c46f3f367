"""The task page's timeline and canvas links (``cloudq/dashboard/taskview.py``): the timeline a
record tells and what it says it cannot, and over HTTP on SQLite with a real burst worker the
links of a chain's steps, a chord's members and body, and a saved group's progress."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from cloudq import chain, chord, group, states
from cloudq.dashboard.app import create_app
from cloudq.dashboard.taskview import timeline
from cloudq.interfaces import ResultRecord
from cloudq.testing.workers import run_burst


def rows(page: str, table: str) -> list[list[str]]:
    """The cells of each row of ``<table id=table>``'s body, tags stripped."""
    found = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S)
    assert found, f"the page has a {table} table"
    body = found.group(1).split("<tbody>", 1)[-1]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def test_the_timeline_of_a_finished_task_and_what_it_cannot_tell() -> None:
    record = ResultRecord(
        "t1",
        states.FAILURE,
        "notify",
        error_type="ValueError",
        error_message="no",
        attempts=3,
        sent_at=100.0,
        started_at=102.5,
        finished_at=103.0,
    )
    events, untold = timeline(record)
    assert [(e.what, e.at, e.note) for e in events] == [
        ("sent", 100.0, ""),
        ("received and started (attempt 3)", 102.5, "waited 2.500 s"),
        ("FAILURE", 103.0, "ran 0.500 s; ValueError"),
    ]
    assert untold == [
        "the 2 earlier attempt(s) that were retried: the record keeps the latest state only, "
        "so their times and errors are not kept"
    ]


def test_a_retrying_task_and_a_record_not_written_by_a_worker() -> None:
    retrying = ResultRecord("t2", states.RETRY, "notify", error_type="KeyError", attempts=1, sent_at=5.0)
    events, untold = timeline(retrying)
    assert [e.what for e in events] == ["sent", "RETRY"] and untold == []
    assert events[1].note.startswith("attempt 1 failed, it runs again later; KeyError")
    revoked = ResultRecord("t3", states.REVOKED, "slow", finished_at=9.0)
    events, untold = timeline(revoked)
    assert [(e.what, e.at) for e in events] == [("REVOKED", 9.0)]
    assert untold == ["when it was sent: the record was not written by a worker running it"]
    assert timeline(None) == (
        [],
        ["no record yet: a queued task has none until a worker writes one (Celery's PENDING)"],
    )


def test_a_chains_steps_link_each_other_and_show_their_timeline(app: Any) -> None:
    slow = app.tasks["slow"]
    last = chain(slow.s(1), slow.s(), slow.s()).apply_async()
    first, middle = last.parent.parent.id, last.parent.id
    run_burst(app)
    web = TestClient(create_app(app))
    page = web.get(f"/tasks/{middle}").text
    assert rows(page, "links") == [["parent", first, "slow", "SUCCESS"], ["sent next", last.id, "slow", "SUCCESS"]]
    assert [row[0] for row in rows(page, "timeline")] == ["sent", "received and started (attempt 1)", "SUCCESS"]
    assert 'id="untold"' not in page, "a first attempt that succeeded: the timeline is complete"
    assert rows(web.get(f"/tasks/{last.id}").text, "links") == [
        ["parent", middle, "slow", "SUCCESS"],
        ["root", first, "slow", "SUCCESS"],
    ]


def test_a_chord_member_shows_its_chord_progress_and_body(app: Any) -> None:
    slow, lookup, total = app.tasks["slow"], app.tasks["lookup"], app.tasks["total"]
    body = chord([slow.s(1), lookup.s("k"), slow.s(2)], total.s()).apply_async()
    header = body.parent
    run_burst(app)
    page = TestClient(create_app(app)).get(f"/tasks/{header.results[0].id}").text
    assert re.search(r"<h3>Chord <a [^>]*>" + header.id, page)
    assert 'id="links"' not in page, "no parent, root or children: no links table"
    assert "3 of 3 ended (2 succeeded, 1 failed or revoked)" in page
    assert rows(page, "members") == [
        ["member 1 (this task)", header.results[0].id, "slow", "SUCCESS"],
        ["member 2", header.results[1].id, "lookup", "FAILURE"],
        ["member 3", header.results[2].id, "slow", "SUCCESS"],
        ["chord body", body.id, "total", "FAILURE"],
    ]


def test_a_saved_groups_progress_counts_the_members_that_ended(app: Any) -> None:
    slow = app.tasks["slow"]
    saved = group(slow.s(1), slow.s(2)).apply_async().save()
    app.control.revoke(saved.results[1].id)  # ended before it ran; the other is still queued
    web = TestClient(create_app(app))
    page = web.get(f"/tasks/{saved.id}").text
    assert "1 of 2 ended (0 succeeded, 1 failed or revoked)" in page
    run_burst(app)
    page = web.get(f"/tasks/{saved.results[0].id}").text
    assert "2 of 2 ended (1 succeeded, 1 failed or revoked)" in page
    unsaved = group(slow.s(3), slow.s(4)).apply_async()
    run_burst(app)
    page = web.get(f"/tasks/{unsaved.results[0].id}").text
    assert "The group was not saved (GroupResult.save())" in page and 'id="progress"' not in page


def test_links_show_no_argument_values(app: Any) -> None:
    notify, slow = app.tasks["notify"], app.tasks["slow"]
    last = chain(slow.s(1), notify.si("ann@example.com")).apply_async()
    run_burst(app)
    page = TestClient(create_app(app)).get(f"/tasks/{last.parent.id}").text
    assert rows(page, "links") == [["sent next", last.id, "notify", "FAILURE"]]
    assert "ann@example.com" not in page
