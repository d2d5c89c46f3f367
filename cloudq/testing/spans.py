"""Spans from a test: ``memory_spans()`` is the process's tracer provider exporting to memory.

Needs ``opentelemetry-sdk`` (cloudq's ``dev`` extra); OpenTelemetry allows one global provider
per process, so every test shares it and clears the exporter it reads."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ..observability.tracing import SCOPE

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
    return _exporter


def cloudq_spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    """The finished spans cloudq made of ``kind`` (PRODUCER: send, CONSUMER: process)."""
    return [s for s in exporter.get_finished_spans() if s.kind == kind and s.instrumentation_scope.name == SCOPE]
