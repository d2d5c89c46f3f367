"""OpenTelemetry tracing (cloudq/observability/tracing.py), checked with the SDK's in-memory
exporter: the producer's span and the task's span are one trace, through a real burst worker, the
Lambda handler on moto and a chain's steps; without the API nothing of it is imported."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cloudq import App, chain
from cloudq.errors import ConfigurationError
from cloudq.testing.spans import cloudq_spans, memory_spans, one_send_and_run
from cloudq.testing.workers import run_burst


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = memory_spans()
    yield exporter
    exporter.clear()


def by_kind(found: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return cloudq_spans(found, kind)


def test_producer_and_worker_spans_are_one_trace(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    app = App("traced", broker=f"sqlite:///{tmp_path}/q.db", results=f"sqlite:///{tmp_path}/r.db")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    with trace.get_tracer("test").start_as_current_span("request") as outer:
        result = add.delay(2, 3)
    run_burst(app)
    assert result.get(timeout=5) == 5
    [send] = by_kind(spans, SpanKind.PRODUCER)
    [run] = by_kind(spans, SpanKind.CONSUMER)
    assert send.name == "send default" and run.name == "process default"
    assert send.context.trace_id == run.context.trace_id == outer.get_span_context().trace_id
    assert send.parent is not None and send.parent.span_id == outer.get_span_context().span_id
    assert run.parent is not None and run.parent.span_id == send.context.span_id
    assert send.attributes is not None and run.attributes is not None
    assert send.attributes["messaging.system"] == run.attributes["messaging.system"] == "sqlite"
    assert send.attributes["cloudq.task.id"] == run.attributes["cloudq.task.id"] == result.id
    assert run.attributes["messaging.destination.name"] == "default"
    assert run.attributes["cloudq.task.name"] == add.name
    assert run.attributes["cloudq.task.attempt"] == 1
    assert run.attributes["messaging.message.id"]
    assert run.status.status_code == StatusCode.UNSET


def test_a_failed_task_has_status_error_and_the_exception(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    app = App("traced", broker=f"sqlite:///{tmp_path}/q.db", results=f"sqlite:///{tmp_path}/r.db")

    @app.task(max_retries=0)
    def boom() -> None:
        raise ValueError("no luck")

    boom.delay()
    run_burst(app)
    [run] = by_kind(spans, SpanKind.CONSUMER)
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description is not None and "ValueError: no luck" in run.status.description
    [event] = [e for e in run.events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "ValueError"


def test_a_chains_steps_are_one_trace(spans: InMemorySpanExporter) -> None:
    app = App("traced", broker="memory://", results="memory://")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    result = chain(add.s(1, 2), add.s(10), add.s(100)).delay()
    run_burst(app)
    assert result.get(timeout=5) == 113
    found = spans.get_finished_spans()
    runs = by_kind(spans, SpanKind.CONSUMER)
    sends = by_kind(spans, SpanKind.PRODUCER)
    assert len(runs) == 3 and len(sends) == 3
    assert len({s.context.trace_id for s in runs + sends}) == 1
    by_id = {s.context.span_id: s for s in found}
    steps = sorted(runs, key=lambda s: s.start_time or 0)
    for before, after in itertools.pairwise(steps):
        assert after.parent is not None
        send = by_id[after.parent.span_id]  # each step's send span is a child of the step before it
        assert send.kind == SpanKind.PRODUCER
        assert send.parent is not None and send.parent.span_id == before.context.span_id
    assert {s.attributes["messaging.system"] for s in runs if s.attributes} == {"memory"}


@pytest.mark.aws
def test_producer_and_lambda_handler_spans_are_one_trace(spans: InMemorySpanExporter, sqs: Any, prefix: str) -> None:
    from cloudq_aws.lambda_.handler import make_handler
    from cloudq_aws.testing import SQSPoller

    app = App("traced-lambda", broker=f"sqs://?prefix={prefix}&wait=0", results="memory://")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handler = make_handler(app)
    result = add.delay(4, 5)
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    messages = poller.receive_all(1)
    invocation = poller.invoke(handler, messages)
    assert invocation.response == {"batchItemFailures": []}
    assert result.get(timeout=5) == 9
    _, run = one_send_and_run(spans, "aws_sqs")
    assert run.attributes is not None
    assert run.attributes["messaging.message.id"] == messages[0]["MessageId"]
    assert run.attributes["messaging.destination.name"] == "default"


def test_tracing_false_sends_no_trace_context(spans: InMemorySpanExporter) -> None:
    app = App("untraced", broker="memory://", results="memory://", tracing=False)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(1, 1)
    run_burst(app)
    assert by_kind(spans, SpanKind.CONSUMER) == []
    assert by_kind(spans, SpanKind.PRODUCER) == []


_WITHOUT_OTEL = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoOtel(importlib.abc.MetaPathFinder):  # as if opentelemetry were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, NoOtel())
    from cloudq import App
    from cloudq.testing.workers import run_burst

    app = App("plain", broker="memory://", results="memory://")

    @app.task()
    def add(a, b):
        return a + b

    r = add.delay(1, 2)
    run_burst(app)
    assert r.get(timeout=5) == 3
    from cloudq import signals
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")), len(signals.before_task_publish.receivers))
    try:
        App("strict", broker="memory://", results="memory://", tracing=True).broker
    except Exception as exc:
        print(type(exc).__name__, exc)
    """
)


def test_without_opentelemetry_nothing_is_imported_nor_connected() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_OTEL], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    imported, error = done.stdout.splitlines()
    assert imported == "[] 0"
    assert error.startswith(f"{ConfigurationError.__name__} tracing = true but opentelemetry-api is not installed")


_AUTO_MODE = textwrap.dedent(
    """
    import time
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from cloudq import App
    from cloudq.observability import tracing

    asked = []
    real = trace.get_tracer_provider
    trace.get_tracer_provider = lambda: asked.append(1) or real()
    app = App("auto", broker="memory://")

    @app.task()
    def noop() -> None: ...

    started = time.monotonic()
    for _ in range(2000):
        noop.delay()
    elapsed = time.monotonic() - started
    asked_while_sending = len(asked)
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing.refresh()
    noop.delay()
    print(asked_while_sending, elapsed, len(exporter.get_finished_spans()))
    """
)


def test_auto_mode_asks_for_a_provider_at_most_once_a_second_until_one_is_set() -> None:
    """Asking OpenTelemetry for its provider reads os.environ each time (microseconds per message):
    without a provider, 2,000 sends ask about once per second, and ``refresh()`` (or a second)
    makes the next message traced once one is set."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _AUTO_MODE], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    asked, elapsed, spans = done.stdout.split()
    assert 1 <= int(asked) <= 1 + float(elapsed) / 1.0  # not once per send
    assert int(spans) == 1  # the send after refresh() is traced


def test_the_producer_skips_tracings_receiver_only_when_it_would_open_no_span(spans: InMemorySpanExporter) -> None:
    """``.delay()`` does not build ``before_task_publish``'s arguments when tracing's receiver is
    the only one and would open no span (a third of a send); another receiver still gets them."""
    from cloudq import signals
    from cloudq.envelope import peek
    from cloudq.observability import tracing

    app = App("quiet", broker="memory://", results="memory://", tracing=False)

    @app.task()
    def noop(i: int) -> int:
        return i

    traced = App("traced", broker="memory://", results="memory://")
    tracing.install(traced)  # tracing's receiver is connected (once per process)
    receivers = [r for r in signals.before_task_publish.receivers if r.__module__ == tracing.__name__]
    assert len(receivers) == 1 and tracing.publish_idle(receivers, False)
    assert not tracing.publish_idle(receivers, None)  # a provider is set: it would open a span
    seen: list[dict[str, Any]] = []

    def mine(sender: Any, headers: dict[str, str], **_: Any) -> None:
        headers["seen"] = "yes"
        seen.append(headers)

    assert not tracing.publish_idle([*receivers, mine], False)
    noop.delay(1)
    signals.before_task_publish.connect(mine)
    try:
        noop.delay(2)
    finally:
        signals.before_task_publish.disconnect(mine)
    first, second = (peek(d.body) for d in app.broker.receive("default", 10, 30))
    assert "headers" not in first and second["headers"] == {"seen": "yes"} and seen == [{"seen": "yes"}]
    assert by_kind(spans, SpanKind.PRODUCER) == []
