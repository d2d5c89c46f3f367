"""Metrics: a real ``cloudq worker --metrics-port`` scraped over HTTP and parsed with
prometheus_client's own parser (threads and process pool); the Lambda handler's EMF lines over
moto; the missing extra's one-line hint."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.testing.waiting import wait_for

pytestmark = pytest.mark.timeout(180)
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, list[Any]]:
    """Samples by metric family name, parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list[Any]], sample: str, **labels: str) -> float | None:
    family = families.get(sample.removesuffix("_total").removesuffix("_count"), [])
    for s in family:
        if s.name == sample and s.labels == labels:
            return float(s.value)
    return None


@pytest.fixture
def metrics_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'cloudq.db'}"
    monkeypatch.setenv("CLOUDQ_BROKER", url)
    monkeypatch.setenv("CLOUDQ_RESULTS", url)
    monkeypatch.syspath_prepend(str(HERE))
    import importlib

    import metrics_app

    module = importlib.reload(metrics_app)
    yield module
    module.app.close()


@pytest.mark.parametrize("pool", ["threads", "process"])
def test_a_worker_serves_its_counts_to_prometheus(metrics_app: Any, pool: str) -> None:
    pytest.importorskip("prometheus_client")
    adds = metrics_app.add.send_each([(i, i) for i in range(3)])
    metrics_app.boom.delay()
    flaky = metrics_app.flaky.delay()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "cloudq", "worker", "-A", "metrics_app:app", "-P", pool, "-c", "2"]
    worker = subprocess.Popen(
        [*command, "--metrics-port", str(port), "-l", "INFO"],
        cwd=HERE,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert [h.get(timeout=60) for h in adds] == [0, 2, 4]
        assert flaky.get(timeout=60) == "ok"

        def done() -> dict[str, list[Any]] | None:
            try:
                families = scrape(port)
            except OSError:
                return None
            got = value(families, "cloudq_tasks_total", task="boom", state="failed")
            return (
                families
                if got == 1 and value(families, "cloudq_tasks_total", task="flaky", state="succeeded")
                else None
            )

        families = wait_for(done, 60, 0.1, "the worker's metrics")
        assert value(families, "cloudq_tasks_total", task="add", state="succeeded") == 3
        assert value(families, "cloudq_tasks_total", task="flaky", state="retried") == 1
        assert value(families, "cloudq_tasks_total", task="flaky", state="succeeded") == 1
        assert value(families, "cloudq_dead_letters_total", task="boom", queue="default") == 1
        assert value(families, "cloudq_task_duration_seconds_count", task="add") == 3
        assert value(families, "cloudq_task_duration_seconds_count", task="flaky") == 2
        assert value(families, "cloudq_running_tasks") == 0
        assert value(families, "cloudq_prefetch_capacity") is not None
        # the sampler's first sample is taken as the worker starts: every queue the app routes to
        assert value(families, "cloudq_queue_messages", queue="default", state="ready") is not None
    finally:
        worker.terminate()  # the worker this test started, by its pid
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert f"metrics: http://127.0.0.1:{port}/metrics" in stderr


def test_queue_depth_is_sampled_in_the_background_not_per_scrape(metrics_app: Any) -> None:
    pytest.importorskip("prometheus_client")
    from cloudq.observability.metrics import PrometheusMetrics
    from cloudq.runtime.worker import Worker

    for i in range(4):
        metrics_app.add.delay(i, i)
    worker = Worker(metrics_app.app, concurrency=1)
    metrics = PrometheusMetrics(worker, depth_interval_s=3600)
    port = metrics.serve("127.0.0.1", 0)
    try:
        wait_for(lambda: metrics.samples == 1, 10, 0.01, "the first depth sample")
        for _ in range(5):
            families = scrape(port)
        assert metrics.samples == 1  # five scrapes, no stats call
        assert value(families, "cloudq_queue_messages", queue="default", state="ready") == 4
    finally:
        metrics.close()


@pytest.mark.aws
def test_a_depth_sample_on_sqs_costs_two_requests_per_queue(aws: Any, prefix: str) -> None:
    pytest.importorskip("prometheus_client")
    from cloudq.observability.metrics import DEPTH_INTERVAL_S, PrometheusMetrics
    from cloudq.runtime.worker import Worker

    app = App("depth", broker=f"sqs://?prefix={prefix}&wait=0", results="memory://")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(1, 2)
    metrics = PrometheusMetrics(Worker(app, concurrency=1))
    metrics.sample()  # resolves the queue URLs outside the counted part
    with aws.count_requests() as counts:
        metrics.sample()
    assert counts.of("sqs") == {"GetQueueAttributes": 2}  # the queue and its dead-letter queue
    assert metrics.depths["default"].ready == 1
    per_hour = 2 * 3600 / DEPTH_INTERVAL_S
    print(
        f"\nqueue depth on SQS: {per_hour:.0f} GetQueueAttributes per queue-hour per worker at {DEPTH_INTERVAL_S:g} s"
    )
    app.close()


@pytest.mark.aws
def test_the_lambda_handler_prints_emf_lines(aws: Any, sqs: Any, prefix: str) -> None:
    from cloudq_aws.lambda_.handler import LambdaHandler
    from cloudq_aws.testing import FakeLambdaContext, SQSPoller

    app = App("emf", broker=f"sqs://?prefix={prefix}&wait=0", results=f"dynamodb://{prefix}results", metrics_emf=True)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="boom")
    def boom() -> None:
        raise ValueError("no")

    handler = LambdaHandler(app)
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    for i in range(4):
        add.delay(i, i)
    boom.delay()
    out = io.StringIO()
    with aws.count_requests() as counts, redirect_stdout(out):
        poller.invoke(handler, poller.receive_all(10), FakeLambdaContext())
    assert "cloudwatch" not in {key.split(":", 1)[0] for key in counts}  # no PutMetricData: log lines only
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith('{"_aws"')]
    by_metric: dict[tuple[str, ...], Any] = {}
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "cloudq"
        [metric] = directive["Metrics"]
        [dimensions] = directive["Dimensions"]
        by_metric[(metric["Name"], *(line[d] for d in dimensions))] = line[metric["Name"]]
    assert by_metric[("cloudq_tasks_total", "add", "succeeded")] == 4
    assert by_metric[("cloudq_tasks_total", "boom", "failed")] == 1
    assert by_metric[("cloudq_dead_letters_total", "boom", "default")] == 1
    durations = by_metric[("cloudq_task_duration_seconds", "add")]
    assert len(durations) == 4 and all(d >= 0 for d in durations)
    # the next invocation starts afresh
    out = io.StringIO()
    add.delay(1, 1)
    with redirect_stdout(out):
        poller.invoke(handler, poller.receive_all(10), FakeLambdaContext())
    totals = [json.loads(line) for line in out.getvalue().splitlines() if '"cloudq_tasks_total"' in line]
    assert [(t["task"], t["cloudq_tasks_total"]) for t in totals] == [("add", 1)]


def test_without_prometheus_client_the_worker_flag_is_one_line_naming_the_extra(metrics_app: Any) -> None:
    hide = "import sys; sys.modules['prometheus_client'] = None; from cloudq.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", hide, "worker", "-A", "metrics_app:app", "--metrics-port", str(free_port())],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].endswith("pip install 'cloudq[metrics]'"), done.stderr
    assert "Traceback" not in done.stderr


def test_outcomes_count_under_celerys_states_and_emf_keeps_cloudwatchs_100_values_limit() -> None:
    from cloudq.interfaces import Delivery, OutgoingMessage
    from cloudq.observability.metrics import EMFBatch
    from cloudq.runtime.executor import Ack, DeadLetter, Requeue, RetryIn
    from cloudq.runtime.presence import Tracker

    ticks = iter(range(1000))
    tracker = Tracker(clock=lambda: float(next(ticks)))  # each run takes one tick
    emf = EMFBatch(clock=lambda: 1.5)
    tracker.observers.append(emf)
    body = json.dumps({"id": "t1", "task": "job"}).encode()
    deliver = Delivery(body, receipt=None, delivery_count=1, queue="q")
    outcomes = [Ack()] * 120 + [Ack("expired"), Ack("revoked"), RetryIn(1.0), DeadLetter("ValueError: x")]
    outcomes += [Ack("duplicate"), Requeue(OutgoingMessage(b"{}"), event="deferred")]  # not runs: not counted
    for outcome in outcomes:
        tracker.run(lambda _d, o=outcome: o, deliver)
    lines = [json.loads(line) for line in emf.lines()]
    counts = {line["state"]: line["cloudq_tasks_total"] for line in lines if "cloudq_tasks_total" in line}
    assert counts == {"succeeded": 120, "revoked": 2, "retried": 1, "failed": 1}
    durations = [line["cloudq_task_duration_seconds"] for line in lines if "cloudq_task_duration_seconds" in line]
    assert [len(chunk) for chunk in durations] == [100, 24] and {d for c in durations for d in c} == {1.0}
    assert {line["_aws"]["Timestamp"] for line in lines} == {1500}
    assert emf.lines() == []  # collected once


def test_a_failing_observer_never_loses_the_outcome() -> None:
    from cloudq.interfaces import Delivery
    from cloudq.runtime.executor import Ack
    from cloudq.runtime.presence import Tracker

    tracker = Tracker()

    def broken(*_: Any) -> None:
        raise RuntimeError("observer bug")

    tracker.observers.append(broken)
    outcome = tracker.run(lambda _d: Ack(), Delivery(b"{}", receipt=None, delivery_count=1, queue="q"))
    assert outcome == Ack() and tracker.counts["succeeded"] == 1
