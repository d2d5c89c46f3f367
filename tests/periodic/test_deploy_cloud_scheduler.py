"""Periodic tasks on Google Cloud: Cloud Scheduler jobs as data and the exact gcloud commands deploy
prints (there is no Cloud Scheduler emulator), and a message shaped like a job's run through the
Pub/Sub push handler and the worker on the emulator, run once however often it is delivered."""

from __future__ import annotations

import base64
import io
import json
import shlex
import wsgiref.util
from typing import Any

import pytest
from cloudq_gcp.deploy.deployer import GCPDeployer
from push_helpers import ensure_queue, make_app

from cloudq import App, ConfigurationError
from cloudq.deploy import build_model, plan_deploy
from cloudq.periodic import PUBLISH_MINUTE
from cloudq.schedules import crontab, every
from cloudq.testing.workers import run_burst


def scheduled_app(project: str, unique: str, schedule: Any = None, **config: Any) -> tuple[App, list[str]]:
    """An app with the periodic task ``digest``; ``runs`` gets the task id of each run."""
    app = make_app(project, unique, **config)
    runs: list[str] = []

    @app.periodic_task(schedule or crontab(30, 7, day_of_week="mon-fri", timezone="Europe/Berlin"), args=("x",),
                       name="digest", bind=True)  # fmt: skip
    def digest(self: Any, kind: str) -> str:
        runs.append(self.request.id)
        return kind

    return app, runs


def test_jobs_as_data_and_the_gcloud_commands_deploy_prints(project: str, unique: str) -> None:
    app, _ = scheduled_app(project, unique, deploy={"scheduler_location": "europe-west1"})
    app.add_periodic_task(every(900), app.tasks[app.periodic_tasks["digest"].task].s("y"), name="quarter")
    deployer = GCPDeployer(build_model(app, "mod:app"))
    assert deployer.problems() == []
    digest, quarter = deployer.jobs
    topic = f"projects/{project}/topics/t{unique}-default"
    spec = digest.spec(project, "europe-west1")
    assert spec["name"] == f"projects/{project}/locations/europe-west1/jobs/cloudq-push-test-dev-digest"
    assert (spec["schedule"], spec["timeZone"]) == ("30 7 * * 1-5", "Europe/Berlin")
    assert spec["pubsubTarget"]["topicName"] == topic
    assert spec["pubsubTarget"]["attributes"] == {"schedule": "digest"}
    envelope = json.loads(spec["pubsubTarget"]["data"])
    assert envelope["id"] == f"digest@{PUBLISH_MINUTE}" and envelope["args"] == ["x"]
    assert envelope["headers"] == {"cloudq-schedule": "digest", "cloudq-due": PUBLISH_MINUTE}
    assert (quarter.schedule, quarter.time_zone) == ("*/15 * * * *", "UTC")

    notes = deployer.notes()
    command = notes[notes.index(next(n for n in notes if n.startswith("# periodic tasks"))) + 1]
    words = shlex.split(command)
    assert words[:6] == ["gcloud", "scheduler", "jobs", "create", "pubsub", "cloudq-push-test-dev-digest"]
    options = dict(w.removeprefix("--").split("=", 1) for w in words[6:])
    assert options == {
        "project": project,
        "location": "europe-west1",
        "schedule": "30 7 * * 1-5",
        "time-zone": "Europe/Berlin",
        "topic": topic,
        "message-body": spec["pubsubTarget"]["data"],
        "attributes": "schedule=digest",
    }


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (every(20), r"every\(20 s\) cannot run on Cloud Scheduler"),
        (every(7 * 60), "cron repeats only intervals that divide an hour or a day"),
        (crontab(0, 0, day_of_month=1, day_of_week="mon"), "restricts both day_of_month and day_of_week"),
    ],
)
def test_what_cloud_scheduler_cannot_express_is_refused(project: str, unique: str, schedule: Any, message: str) -> None:
    app, _ = scheduled_app(project, unique, schedule)
    deployer = GCPDeployer(build_model(app, "mod:app"))
    with pytest.raises(ConfigurationError, match=message) as refused:
        plan_deploy(deployer, deployer.model)
    assert "run it with `cloudq beat` instead" in str(refused.value)


def wsgi_post(handler: Any, body: bytes) -> int:
    """One POST to a WSGI app, in this thread."""
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="POST", CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)), PATH_INFO="/")
    environ["wsgi.input"] = io.BytesIO(body)
    status: list[str] = []
    b"".join(handler(environ, lambda s, h, e=None: status.append(s)))
    return int(status[0].split()[0])


def job_push(data: str, subscription: str, message_id: str, published: str) -> bytes:
    message = {
        "data": base64.b64encode(data.encode()).decode(),
        "attributes": {"schedule": "digest"},
        "messageId": message_id,
        "publishTime": published,
    }
    return json.dumps({"message": message, "subscription": subscription}).encode()


@pytest.mark.gcp
@pytest.mark.usefixtures("pubsub_emulator")
def test_a_jobs_run_goes_through_the_push_handler_and_the_worker_once(project: str, unique: str) -> None:
    app, runs = scheduled_app(project, unique)
    [job] = GCPDeployer(build_model(app, "mod:app")).jobs
    paths = ensure_queue(app)

    # push: Pub/Sub delivers the run, then delivers it again (same message, same publish time)
    handler = app.push_app("wsgi")
    first = job_push(job.data, paths.subscription, "7001", "2026-12-01T07:30:02.250Z")
    assert wsgi_post(handler, first) in (200, 204)
    assert wsgi_post(handler, first) in (200, 204)
    assert runs == ["digest@2026-12-01T07:30:00Z"]  # the publish time, down to the minute
    assert app.AsyncResult(runs[0]).get(timeout=5) == "x"

    # the worker: the job publishes the next day's run to the topic; it is pulled and run once
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]

    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.publish(paths.topic, job.data.encode(), **job.attributes).result(timeout=30)
    finally:
        publisher.transport.close()
    run_burst(app)
    assert len(runs) == 2 and runs[1].startswith("digest@") and runs[1].endswith(":00Z"), runs
    assert app.AsyncResult(runs[1]).get(timeout=5) == "x"
