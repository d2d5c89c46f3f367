"""Task metrics, one naming scheme in every runtime.

- ``cloudq_tasks_total{task,state}``: finished runs; state is succeeded, failed (dead-lettered:
  every failure for good is), retried or revoked (expired tasks included, as Celery's
  ``task_revoked(expired=True)``).
- ``cloudq_task_duration_seconds{task}``: a histogram of run times.
- ``cloudq_dead_letters_total{task,queue}``: messages dead-lettered (a failed task, or a message
  that is not a runnable envelope: task ``?``).
- worker only: ``cloudq_prefetched_messages`` (held, not running yet), ``cloudq_running_tasks``,
  ``cloudq_prefetch_capacity`` and ``cloudq_queue_messages{queue,state}`` (``Broker.stats``).

Counted from the outcomes the runtime's ``Tracker`` sees, not from ``cloudq.signals``: with the
process pool the signals fire in the children, while every outcome comes back to the parent, so
one observer counts the same in the threads and process pools, Lambda and push alike. The worker
serves Prometheus text (``prometheus-client``, the ``cloudq[metrics]`` extra); Lambda prints
CloudWatch Embedded Metric Format lines (no API call, setting ``metrics_emf``). Queue depth is
sampled in a background thread every ``depth_interval_s``, never per scrape: on SQS a sample is
two GetQueueAttributes per queue (queue + dead-letter queue), 240 requests per queue-hour at 30 s.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..interfaces import UNKNOWN, Delivery, QueueStats
from ..registry import extra_for, require_extra
from ..runtime.consumer import peek
from ..runtime.executor import DeadLetter, Outcome
from ..runtime.presence import outcome_state

if TYPE_CHECKING:
    from ..runtime.worker import Worker

log = logging.getLogger("cloudq.metrics")

TASKS = "cloudq_tasks_total"
DURATION = "cloudq_task_duration_seconds"
DEAD_LETTERS = "cloudq_dead_letters_total"
DEPTH_INTERVAL_S = 30.0
EMF_NAMESPACE = "cloudq"
EMF_MAX_VALUES = 100  # CloudWatch takes at most 100 values per metric in one EMF line


@dataclass(frozen=True, slots=True)
class Finished:
    """One counted run: ``state`` None for outcomes that are not a run (a duplicate delivery, an
    ETA hop, a rate-limit wait), which add to no metric."""

    task: str
    queue: str
    state: str | None
    seconds: float
    dead_lettered: bool


def finished(delivery: Delivery, outcome: Outcome, seconds: float) -> Finished:
    _, task, _ = peek(delivery.body)
    return Finished(task, delivery.queue, outcome_state(outcome), seconds, isinstance(outcome, DeadLetter))


class PrometheusMetrics:
    """The worker's metrics: a ``Tracker`` observer plus gauges read from the worker at scrape
    time (no request) and queue depths from the sampler thread's last sample."""

    def __init__(self, worker: Worker, depth_interval_s: float = DEPTH_INTERVAL_S) -> None:
        require_extra("metrics", "cloudq worker --metrics-port", extra_for("metrics"))
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.worker = worker
        self.depth_interval_s = depth_interval_s
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Counter(TASKS, "Finished task runs by task and state", ["task", "state"], registry=self.registry)
        self.duration = Histogram(DURATION, "Task run time in seconds", ["task"], registry=self.registry)
        self.dead = Counter(DEAD_LETTERS, "Messages dead-lettered", ["task", "queue"], registry=self.registry)
        self.depths: dict[str, QueueStats] = {}
        self.samples = 0  # depth samples taken: for tests and logs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self.registry.register(_WorkerGauges(self))

    def __call__(self, delivery: Delivery, outcome: Outcome, seconds: float) -> None:
        done = finished(delivery, outcome, seconds)
        if done.state is not None:
            self.tasks.labels(done.task, done.state).inc()
            self.duration.labels(done.task).observe(done.seconds)
        if done.dead_lettered:
            self.dead.labels(done.task, done.queue).inc()

    def sample(self) -> None:
        """One ``Broker.stats`` per queue; a failing one keeps the last figures and logs."""
        broker = self.worker.app.broker
        for queue in self.worker.queues:
            try:
                self.depths[queue] = broker.stats(queue)
            except Exception as exc:
                log.warning("queue depth of %s not sampled: %s: %s", queue, type(exc).__name__, exc)
        self.samples += 1

    def _sampler(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.depth_interval_s):
                return

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint and the sampler; the port bound (``port`` 0 is not "off" here:
        it binds any free port)."""
        from prometheus_client import start_http_server

        self.worker.tracker.observers.append(self)
        self.worker.app.broker  # noqa: B018 - open it here, not racing the worker's run
        server, thread = start_http_server(port, host, registry=self.registry)
        self._server = server
        sampler = threading.Thread(target=self._sampler, name="cloudq-metrics-depth", daemon=True)
        sampler.start()
        self._threads = [thread, sampler]
        bound: int = server.server_address[1]
        return bound

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _WorkerGauges:
    """Gauges computed at scrape time from what the worker holds (no broker call)."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        worker = self.metrics.worker
        running = len(worker.tracker.snapshot()[0])
        yield GaugeMetricFamily("cloudq_running_tasks", "Tasks running now", value=running)
        yield GaugeMetricFamily(
            "cloudq_prefetched_messages", "Messages held, not running yet", value=max(worker.holding - running, 0)
        )
        yield GaugeMetricFamily("cloudq_prefetch_capacity", "Messages the worker may hold", value=worker.budget)
        depth = GaugeMetricFamily(
            "cloudq_queue_messages", "Messages per queue and state (last sample)", labels=["queue", "state"]
        )
        for queue, stats in sorted(self.metrics.depths.items()):
            for state in ("ready", "in_flight", "delayed", "dead_lettered"):
                value = getattr(stats, state)
                if value != UNKNOWN:  # a count the service cannot tell is left out, never a guess
                    depth.add_metric([queue, state], value)
        yield depth


class EMFBatch:
    """Lambda: collects one invocation's runs (a ``Tracker`` observer) and writes them as
    CloudWatch Embedded Metric Format JSON lines, one per (task, state) count and one per task's
    durations, each line one log event CloudWatch turns into metrics (no PutMetricData)."""

    def __init__(self, namespace: str = EMF_NAMESPACE, clock: Callable[[], float] = time.time) -> None:
        self.namespace = namespace
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._dead: Counter[tuple[str, str]] = Counter()
        self._durations: defaultdict[str, list[float]] = defaultdict(list)

    def __call__(self, delivery: Delivery, outcome: Outcome, seconds: float) -> None:
        done = finished(delivery, outcome, seconds)
        with self._lock:
            if done.state is not None:
                self._counts[done.task, done.state] += 1
                self._durations[done.task].append(done.seconds)
            if done.dead_lettered:
                self._dead[done.task, done.queue] += 1

    def lines(self) -> list[str]:
        """The lines of what was collected since the last call, which starts afresh."""
        with self._lock:
            counts, dead, durations = self._counts, self._dead, self._durations
            self._counts, self._dead, self._durations = Counter(), Counter(), defaultdict(list)
        stamp = int(self._clock() * 1000)
        out = [self._line(stamp, TASKS, "Count", {"task": t, "state": s}, n) for (t, s), n in sorted(counts.items())]
        out += [
            self._line(stamp, DEAD_LETTERS, "Count", {"task": t, "queue": q}, n) for (t, q), n in sorted(dead.items())
        ]
        for task, values in sorted(durations.items()):
            for chunk in _chunks(values, EMF_MAX_VALUES):
                out.append(self._line(stamp, DURATION, "Seconds", {"task": task}, chunk))
        return out

    def flush(self, write: Callable[[str], Any] = print) -> int:
        """Write the lines (stdout by default: Lambda sends it to CloudWatch Logs); how many."""
        written = self.lines()
        for line in written:
            write(line)
        return len(written)

    def _line(self, stamp: int, name: str, unit: str, dimensions: dict[str, str], value: Any) -> str:
        directive = {
            "Namespace": self.namespace,
            "Dimensions": [list(dimensions)],
            "Metrics": [{"Name": name, "Unit": unit}],
        }
        return json.dumps({"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [directive]}, **dimensions, name: value})


def _chunks(values: Sequence[float], size: int) -> Iterable[list[float]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])
