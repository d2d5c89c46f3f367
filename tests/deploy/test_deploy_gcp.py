"""``cloudq deploy`` / ``destroy`` on Google Cloud, against Google's Pub/Sub emulator: topics,
pull and push subscriptions, dead-letter and retry policies exist as planned, a redeploy changes
nothing, an option change updates one subscription, destroy removes only what cloudq labelled,
and what the emulator cannot do is printed as exact gcloud commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import Project

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(120)]

APP = """
from cloudq import App

app = App(
    "{name}",
    broker="pubsub://{project}?prefix={prefix}&ordered=orders",
    results="firestore://{prefix}results",
    deploy={{
        "queues": {{
            "emails": {{
                "runtime": "push",
                "push_endpoint": "https://tasks.example.com/push",
                "service_account": "push@{project}.iam.gserviceaccount.com",
            }}
        }}
    }},
)


@app.task(name="send_email", queue="emails", time_limit=90, retry_backoff=5, retry_backoff_max=120)
def send_email(to: str) -> None:
    pass


@app.task(name="place_order", queue="orders", max_retries=6)
def place_order(order_id: int) -> None:
    pass


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b
"""


@pytest.fixture
def gcp(pubsub_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()
    yield publisher, subscriber
    subscriber.close()


def make(tmp_path: Path, project: str, unique: str) -> tuple[Project, str]:
    prefix = f"d{unique}-"
    return Project.create(tmp_path, APP.format(name=f"shop{unique}", project=project, prefix=prefix)), prefix


def subscription(subscriber: Any, project: str, name: str) -> Any:
    return subscriber.get_subscription(request={"subscription": f"projects/{project}/subscriptions/{name}"})


def topic_names(publisher: Any, project: str, prefix: str) -> set[str]:
    topics = publisher.list_topics(request={"project": f"projects/{project}"})
    return {t.name.rsplit("/", 1)[-1] for t in topics if t.name.rsplit("/", 1)[-1].startswith(prefix)}


def subscription_names(subscriber: Any, project: str, prefix: str) -> set[str]:
    subs = subscriber.list_subscriptions(request={"project": f"projects/{project}"})
    return {s.name.rsplit("/", 1)[-1] for s in subs if s.name.rsplit("/", 1)[-1].startswith(prefix)}


def test_deploy_creates_topics_and_subscriptions_as_planned(
    gcp: Any, tmp_path: Path, project: str, unique: str
) -> None:
    publisher, subscriber = gcp
    p, prefix = make(tmp_path, project, unique)
    out = p.run_json("deploy", "--yes")
    queues = ("default", "emails", "orders")
    assert out["summary"]["create"] == 4 * len(queues) and len(out["applied"]) == 12
    assert topic_names(publisher, project, prefix) == {f"{prefix}{q}{s}" for q in queues for s in ("", "-dead")}
    labels = {"cloudq-app": f"shop{unique}", "cloudq-stage": "dev", "cloudq-managed-by": "cloudq"}

    emails = subscription(subscriber, project, f"{prefix}emails")
    assert emails.topic == f"projects/{project}/topics/{prefix}emails"
    assert emails.ack_deadline_seconds == 100  # the task's time_limit (90 s) + margin: push waits this long
    assert emails.dead_letter_policy.dead_letter_topic == f"projects/{project}/topics/{prefix}emails-dead"
    assert emails.dead_letter_policy.max_delivery_attempts == 3 + 1 + 3
    assert emails.retry_policy.minimum_backoff.total_seconds() == 5
    assert emails.retry_policy.maximum_backoff.total_seconds() == 120
    assert emails.push_config.push_endpoint == "https://tasks.example.com/push"
    assert emails.push_config.oidc_token.service_account_email == f"push@{project}.iam.gserviceaccount.com"
    assert emails.push_config.oidc_token.audience == "https://tasks.example.com/push"
    assert dict(emails.labels) == labels

    orders = subscription(subscriber, project, f"{prefix}orders")
    assert orders.enable_message_ordering is True
    assert orders.dead_letter_policy.max_delivery_attempts == 6 + 1 + 3
    assert orders.push_config.push_endpoint == ""  # pull: the container worker leases
    assert "retry_policy" not in orders  # cloudq schedules pull retries itself

    default = subscription(subscriber, project, f"{prefix}default")
    assert default.ack_deadline_seconds == 60 and default.enable_message_ordering is False
    dead = subscription(subscriber, project, f"{prefix}default-dead")
    assert dead.topic == f"projects/{project}/topics/{prefix}default-dead" and dict(dead.labels) == labels
    topic = publisher.get_topic(request={"topic": f"projects/{project}/topics/{prefix}default"})
    assert dict(topic.labels) == labels

    again = p.run_json("deploy", "--yes")
    assert again["noop"] is True and again["applied"] == []
    assert "No changes: the cloud already matches" in p.run("deploy").stdout
    p.run("destroy", "--yes")


def test_a_changed_option_updates_only_that_subscription(
    gcp: Any, tmp_path: Path, project: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, subscriber = gcp
    p, prefix = make(tmp_path, project, unique)
    p.run("deploy", "--yes")
    source = tmp_path / f"{p.module}.py"
    source.write_text(source.read_text().replace("max_retries=6", "max_retries=20"))
    plan = p.run_json("deploy", "--dry-run")
    changed = [s for s in plan["steps"] if s["action"] != "unchanged"]
    assert changed == [
        {
            "action": "update",
            "kind": "pubsub.subscription",
            "name": f"{prefix}orders",
            "changes": {
                "dead_letter_policy": {
                    "from": {"dead_letter_topic": f"{prefix}orders-dead", "max_delivery_attempts": 10},
                    "to": {"dead_letter_topic": f"{prefix}orders-dead", "max_delivery_attempts": 24},
                }
            },
        }
    ]
    p.run("deploy", "--yes")
    assert subscription(subscriber, project, f"{prefix}orders").dead_letter_policy.max_delivery_attempts == 24
    assert subscription(subscriber, project, f"{prefix}default").dead_letter_policy.max_delivery_attempts == 7
    assert p.run_json("deploy", "--dry-run")["noop"] is True
    p.run("destroy", "--yes")


def test_destroy_removes_only_what_cloudq_labelled(gcp: Any, tmp_path: Path, project: str, unique: str) -> None:
    publisher, subscriber = gcp
    p, prefix = make(tmp_path, project, unique)
    p.run("deploy", "--yes")
    publisher.create_topic(request={"name": f"projects/{project}/topics/{prefix}hand-made"})
    subscriber.create_subscription(
        request={
            "name": f"projects/{project}/subscriptions/{prefix}hand-made",
            "topic": f"projects/{project}/topics/{prefix}hand-made",
        }
    )
    result = p.run("destroy", "--yes")
    assert "Done: deleted 12 resource(s)." in result.stdout
    assert topic_names(publisher, project, prefix) == {f"{prefix}hand-made"}
    assert subscription_names(subscriber, project, prefix) == {f"{prefix}hand-made"}
    assert "Nothing to destroy" in p.run("destroy", "--yes").stdout


def test_what_the_emulator_cannot_do_is_printed_as_gcloud_commands(
    gcp: Any, tmp_path: Path, project: str, unique: str
) -> None:
    p, prefix = make(tmp_path, project, unique)
    out = p.run("deploy", "--dry-run").stdout
    assert (
        f"gcloud firestore fields ttls update expires_at --collection-group={prefix}results --enable-ttl "
        f"--project={project}" in out
    )
    assert f"--collection-group={prefix}results-workers --enable-ttl --project={project}" in out
    assert (
        f"gcloud firestore indexes composite create --collection-group={prefix}results --query-scope=COLLECTION "
        "--field-config=field-path=state,order=ascending --field-config=field-path=updated_at,order=descending "
        f"--project={project}" in out
    )
    assert f"gcloud pubsub topics add-iam-policy-binding {prefix}emails-dead --project={project}" in out
    assert "--role=roles/pubsub.publisher" in out and "--role=roles/pubsub.subscriber" in out
    assert f"gcloud run deploy shop{unique}-dev-emails --source . --project={project}" in out
    assert "cloudq_gcp.push_entry:application" in out
    assert f"--member=serviceAccount:push@{project}.iam.gserviceaccount.com --role=roles/run.invoker" in out
    assert topic_names(gcp[0], project, prefix) == set()  # a dry run creates nothing


VALIDATION = {
    "delivery attempts below Pub/Sub's 5": (
        {"orders": {"max_deliveries": 3}},
        "queue 'orders': 3 delivery attempts is outside the 5-100 a Pub/Sub dead-letter policy allows: set "
        "max_deliveries to 5-100 in [tool.cloudq.deploy.queues.orders]",
    ),
    "retries above Pub/Sub's 100": (
        {"orders": {"max_deliveries": 150}},
        "queue 'orders': 150 delivery attempts is outside the 5-100",
    ),
    "push without an endpoint": (
        {"orders": {"runtime": "push"}},
        "queue 'orders' runs on push and needs push_endpoint = \"https://...\"",
    ),
    "time_limit above the push deadline": (
        {"big": {"runtime": "push", "push_endpoint": "https://x.example.com/"}},
        "task 'crunch' has time_limit=900 s but queue 'big' runs on Pub/Sub push, which allows at most 600 s: "
        'lower its time_limit, or set runtime = "container" in [tool.cloudq.deploy.queues.big]',
    ),
    "lambda runtime on Pub/Sub": (
        {"orders": {"runtime": "lambda"}},
        "queue 'orders': runtime 'lambda' is for AWS",
    ),
}


@pytest.mark.parametrize("case", list(VALIDATION))
def test_an_impossible_configuration_is_refused_and_creates_nothing(
    case: str, gcp: Any, tmp_path: Path, project: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues, message = VALIDATION[case]
    prefix = f"v{unique}-"
    source = (
        f'from cloudq import App\napp = App("v{unique}", broker="pubsub://{project}?prefix={prefix}")\n'
        '@app.task(name="place_order", queue="orders")\ndef place_order() -> None: ...\n'
        '@app.task(name="crunch", queue="big", time_limit=900)\ndef crunch() -> None: ...\n'
    )
    p = Project.create(tmp_path, source)
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({"queues": queues}))
    for args in (("deploy", "--yes"), ("deploy", "--dry-run")):
        result = p.run(*args, ok=False)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert topic_names(gcp[0], project, prefix) == set()


def test_a_max_retries_pubsub_cannot_count_is_refused(gcp: Any, tmp_path: Path, project: str, unique: str) -> None:
    source = (
        f'from cloudq import App\napp = App("r{unique}", broker="pubsub://{project}?prefix=r{unique}-")\n'
        '@app.task(name="stubborn", max_retries=150)\ndef stubborn() -> None: ...\n'
    )
    result = Project.create(tmp_path, source).run("deploy", "--dry-run", ok=False)
    assert "queue 'default': 151 delivery attempts is outside the 5-100" in result.output
    assert "lower the max_retries of its tasks to 99 or less" in result.output
