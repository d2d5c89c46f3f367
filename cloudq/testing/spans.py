"""Spans from a test: ``memory_spans()`` is the process's tracer provider exporting to memory.

Needs ``opentelemetry-sdk`` (cloudq's ``dev`` extra); OpenTelemetry allows one global provider
per process, so every test shares it and clears the exporter it reads."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ..observability.tracing import SCOPE, refresh

_exporter = InMemorySpanExporter()
_attached: list[TracerProvider] = []


def memory_spans() -> InMemorySpanExporter:
    """The cleared in-memory exporter of the process's SDK tracer provider (set here if none is)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if provider not in _attached:
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _attached.append(provider)
    _exporter.clear()
    refresh()  # cloudq may have looked for a provider less than a second ago
    return _exporter


def cloudq_spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    """The finished spans cloudq made of ``kind`` (PRODUCER: send, CONSUMER: process)."""
    return [
        s
        for s in exporter.get_finished_spans()
        if s.kind == kind and s.instrumentation_scope is not None and s.instrumentation_scope.name == SCOPE
    ]


def one_send_and_run(exporter: InMemorySpanExporter, system: str) -> tuple[ReadableSpan, ReadableSpan]:
    """The one ``send`` span and the one ``process`` span, checked to be one trace (the run a child
    of the send) on the messaging system ``system``; their attributes are then known present."""
    [send] = cloudq_spans(exporter, SpanKind.PRODUCER)
    [run] = cloudq_spans(exporter, SpanKind.CONSUMER)
    assert run.context is not None and send.context is not None
    assert run.context.trace_id == send.context.trace_id, "the run is not in the producer's trace"
    assert run.parent is not None and run.parent.span_id == send.context.span_id, "the run's parent is not the send"
    assert run.attributes is not None and send.attributes is not None
    assert run.attributes["messaging.system"] == send.attributes["messaging.system"] == system
    assert run.attributes["cloudq.task.id"] == send.attributes["cloudq.task.id"]
    return send, run
