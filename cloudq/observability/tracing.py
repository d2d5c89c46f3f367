"""OpenTelemetry tracing: W3C trace context in the envelope headers, a span per publish and per run.

Optional (``pip install 'cloudq[tracing]'``): the setting ``tracing`` is ``None`` (default: on when
``opentelemetry-api`` is importable and the process has set a tracer provider), ``True`` (on; an
error at App creation when the API is not installed) or ``False`` (off). Without the API nothing
here imports it and no receiver is connected: publishing and running cost nothing more.

A publish (``before_task_publish``) opens a PRODUCER span ``send {queue}`` and injects its
``traceparent``/``tracestate`` into the message's headers; the span ends once the message is
encoded (the broker call, batched with other messages, is not inside it). A run (the executor)
opens a CONSUMER span ``process {queue}`` whose parent is the context the headers carry. Follow-ups
(chain steps, links, errbacks, chord bodies) are encoded while that span is current, so a chain is
one trace: each step's ``send`` span is a child of the previous step's ``process`` span.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..app import App
    from ..envelope import Envelope
    from ..interfaces import Delivery

T = TypeVar("T")
SCOPE = "cloudq"  # the instrumentation scope name of every cloudq span
_running: ContextVar[Any] = ContextVar("cloudq_process_span", default=None)  # this run's span
_provider_seen = False  # a tracer provider, once set, stays set: stop asking
# until one is set, asking costs microseconds per message (the API reads os.environ each time), so
# auto mode asks at most once per PROVIDER_RECHECK_S; ``refresh()`` asks again at the next message
PROVIDER_RECHECK_S = 1.0
_next_provider_check = 0.0


def messaging_system(broker: object) -> str:
    """OpenTelemetry's ``messaging.system`` of ``broker`` (``cloudq.interfaces.MessagingSystem``;
    its class name when it does not say)."""
    name = getattr(broker, "messaging_system", None)  # MessagingSystem, without a Protocol isinstance per send
    return name if isinstance(name, str) else type(broker).__name__.lower()


@lru_cache(maxsize=1)
def installed() -> bool:
    """``opentelemetry-api`` is importable (asked of the import system: nothing is imported)."""
    try:
        return importlib.util.find_spec("opentelemetry") is not None
    except (ImportError, ValueError):  # a finder that refuses it: not usable either
        return False


def wanted(setting: bool | None) -> bool:
    """Whether ``setting`` may trace in this process; ``True`` without the API is an error."""
    if setting is True and not installed():
        raise ConfigurationError(
            "tracing = true but opentelemetry-api is not installed: pip install 'cloudq[tracing]' (or tracing = false)"
        )
    return setting is not False and installed()


def _tracer(setting: bool | None) -> Any:
    """The tracer to use now, or None: in auto mode (``None``) only once a tracer provider is set
    (noticed within ``PROVIDER_RECHECK_S``, or at once after ``refresh()``)."""
    global _provider_seen, _next_provider_check
    if setting is None and not _provider_seen:
        now = time.monotonic()
        if now < _next_provider_check:
            return None
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            _next_provider_check = now + PROVIDER_RECHECK_S
            return None
        _provider_seen = True
    from opentelemetry import trace

    return trace.get_tracer(SCOPE)


def refresh() -> None:
    """Look for a tracer provider again at the next message: call it after setting one while
    messages are already flowing, to trace from the next one rather than within a second."""
    global _next_provider_check
    _next_provider_check = 0.0


def install(app: App) -> Tracing | None:
    """Connect the publish and run receivers once per process when ``app`` may trace; the app's
    executor then wraps each run in ``Tracing.process``. None: tracing is off for ``app``."""
    setting = app.settings.tracing
    if not wanted(setting):
        return None
    from .. import signals

    signals.before_task_publish.connect(_on_publish)
    signals.task_failure.connect(_on_failure)
    signals.task_retry.connect(_on_retry)
    return Tracing(setting)


def publish_idle(receivers: list[Callable[..., Any]], setting: bool | None) -> bool:
    """Whether firing ``before_task_publish`` to ``receivers`` would do nothing for an app whose
    ``tracing`` setting is ``setting``: they are only this module's receiver, and it would open no
    span (tracing off for that app, or no tracer provider yet). The producer then skips building
    the signal's arguments, a third of a ``.delay()`` otherwise."""
    return receivers == [_on_publish] and (setting is False or _tracer(setting) is None)


def _on_publish(sender: Any, body: dict[str, Any], routing_key: str, headers: dict[str, str], **more: Any) -> None:
    """The PRODUCER span of one message; its context goes into the message's headers."""
    properties = more.get("properties") or {}
    setting = properties["tracing"] if "tracing" in properties else _current_app().settings.tracing
    tracer = _tracer(setting) if setting is not False else None
    if tracer is None:
        return
    from opentelemetry import propagate, trace

    attributes = {
        "messaging.system": properties.get("messaging_system") or messaging_system(_current_app().broker),
        "messaging.destination.name": routing_key,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "cloudq.task.name": body.get("task", str(sender)),
        "cloudq.task.id": body.get("id", ""),
    }
    with tracer.start_as_current_span(f"send {routing_key}", kind=trace.SpanKind.PRODUCER, attributes=attributes):
        propagate.inject(headers)


def _current_app() -> App:
    """The app of a publish whose signal did not say (a receiver called by hand)."""
    from ..app import current_app

    return current_app()


def _on_failure(sender: Any, exception: BaseException, **_: Any) -> None:
    span = _running.get()
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(exception)
        span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))


def _on_retry(sender: Any, reason: Any = None, **_: Any) -> None:
    span = _running.get()
    if span is not None:
        span.add_event("retry", {"cloudq.retry.reason": f"{type(reason).__name__}: {reason}"[:1000]})


class Tracing:
    """The run side: ``process`` wraps one execution in its CONSUMER span."""

    def __init__(self, setting: bool | None) -> None:
        self.setting = setting

    def live(self) -> bool:
        """Whether a run gets a span now (in auto mode, only once a tracer provider is set)."""
        return _tracer(self.setting) is not None

    def process(
        self,
        delivery: Delivery,
        env: Envelope,
        attempt: int,
        system: str,
        run: Callable[[], T],
        dead_reason: Callable[[T], str | None],
    ) -> T:
        """``run()`` inside the span ``process {queue}``, child of the producer's context; a
        dead-lettered outcome (``dead_reason``: its first line) or a raised failure sets status ERROR."""
        tracer = _tracer(self.setting)
        if tracer is None:
            return run()
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Status, StatusCode

        attributes = {
            "messaging.system": system,
            "messaging.destination.name": delivery.queue,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": delivery.message_id,
            "messaging.message.delivery_count": delivery.delivery_count,
            "cloudq.task.name": env.task,
            "cloudq.task.id": env.id,
            "cloudq.task.attempt": attempt,
        }
        parent = propagate.extract(env.headers)
        with tracer.start_as_current_span(
            f"process {delivery.queue}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
        ) as span:
            token = _running.set(span)
            try:
                outcome = run()
            finally:
                _running.reset(token)
            reason = dead_reason(outcome)
            if reason is not None:
                line = reason.partition("\n")[0]
                span.set_attribute("cloudq.dead_letter.reason", line[:1000])
                span.set_status(Status(StatusCode.ERROR, line[:200]))
            return outcome
