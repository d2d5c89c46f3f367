"""The dashboard on SQS + DynamoDB (the moto server over HTTP): the queues page's counts, a redrive
from the page, and what its reads cost, counted at the server. Figures printed with ``-s``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from cloudq_aws.testing.server import MotoServer
from dashboard_browser import TOKEN
from starlette.testclient import TestClient

from cloudq import App, states
from cloudq.dashboard.app import create_app
from cloudq.interfaces import ResultRecord
from cloudq.testing import receive_until

pytestmark = [pytest.mark.aws, pytest.mark.timeout(180)]
TABS = 20  # page loads within one cache period: they cost one load's reads


@pytest.fixture
def app(aws: MotoServer, prefix: str) -> Iterator[App]:
    app = App(
        "dash",
        broker=f"sqs://?prefix={prefix}&wait=1",
        results=f"dynamodb://{prefix}results",
        result_extended=True,
    )

    @app.task(name="notify")
    def notify(email: str) -> str:
        return email

    yield app
    app.close()


def counts_row(web: TestClient) -> list[str]:
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', web.get("/queues").text, re.S)
    assert row is not None
    return re.findall(r'class="n \w+">(?:<a [^>]*>)?(\d+|\?)', row.group(1))


def test_queues_page_redrive_and_their_cost(app: App, aws: MotoServer) -> None:
    handles = [app.send_task("notify", [f"user{i}@example.com"]) for i in range(3)]
    got = receive_until(app.broker, "default", 3, lease_s=300, timeout=60)
    app.broker.dead_letter(got, "ValueError: mail server refused")
    for h in handles:
        app.results.set(ResultRecord(h.id, states.FAILURE, "notify", error_type="ValueError"))
    app.send_task("notify", ["queued@example.com"])
    dashboard = create_app(app, token=TOKEN)
    web = TestClient(dashboard, follow_redirects=False)

    with aws.count_requests() as queues_cost:
        for _ in range(TABS):
            assert counts_row(web) == ["1", "0", "0", "3"]
    assert queues_cost.of("sqs") == {"GetQueueAttributes": 2}, "the queue and its DLQ, once for all the tabs"
    assert queues_cost.of("dynamodb") == {"Query": 1}, "the presence records (the charts' series), once for all"

    with aws.count_requests() as letters_cost:
        for _ in range(TABS):
            page = web.get("/queues/default/dead-letters").text
            assert page.count("ValueError: mail server refused") == 3 and "user0@example.com" not in page
    letters = letters_cost.of("sqs")
    assert letters.get("ReceiveMessage", 0) <= 2, letters  # 3 letters fit one receive; the empty one ends the scan

    with aws.count_requests() as task_cost:
        assert "user1@example.com" not in web.get(f"/tasks/{handles[1].id}").text
    assert task_cost.of("dynamodb") == {"BatchGetItem": 1}, "the record and its children record, read together"
    parent, member = f"p-{handles[2].id}", f"m-{handles[2].id}"
    app.results.set(ResultRecord(parent, states.SUCCESS, "notify"))
    app.results.set(ResultRecord(member, states.SUCCESS, "notify", parent_id=parent, group_id=handles[2].id))
    with aws.count_requests() as linked_cost:
        page = web.get(f"/tasks/{member}").text
        assert f'href="/tasks/{parent}"' in page and "The group was not saved" in page
    assert linked_cost.of("dynamodb") == {"BatchGetItem": 2}, "then its parent and group, read together"

    dashboard.state.dashboard.backends.cache.clear()  # the queues page read the presence records
    with aws.count_requests() as listings_cost:
        for _ in range(TABS):
            assert handles[0].id in web.get("/tasks").text, "the DynamoDB task index lists the failures"
            assert web.get("/workers").status_code == 200
    assert listings_cost.service("sqs") == 0
    # for all the tabs: the task index's listing (one Query per state partition) and the presence one
    assert listings_cost.of("dynamodb") == {"Query": len(states.ALL_STATES) + 1}, listings_cost

    web.post("/login", data={"token": TOKEN})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/queues").text)
    assert csrf is not None
    with aws.count_requests() as redrive_cost:
        done = web.post("/queues/default/dead-letters/redrive", data={"csrf_token": csrf.group(1), "all": "1"})
    assert done.status_code == 303 and "n=3" in done.headers["location"]
    assert counts_row(web) == ["4", "0", "0", "0"]
    print(
        f"\nqueues page ({TABS} loads, 1 queue): {dict(queues_cost)}"
        f"\ndead-letters page ({TABS} loads, 3 letters): {dict(letters_cost)}"
        f"\ntask page (1 load): {dict(task_cost)}"
        f"\ntask page of a group member with a parent (1 load): {dict(linked_cost)}"
        f"\ntasks + workers pages ({TABS} loads each): {dict(listings_cost)}"
        f"\nredrive all of 3 from the page: {dict(redrive_cost)}"
    )
