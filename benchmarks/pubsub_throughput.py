"""Pub/Sub worker throughput, synchronous pull vs streaming pull, through Google's emulators.

Starts the Pub/Sub emulator (and Firestore's for ``--results``), then per round and per pull mode
enqueues N no-op tasks with ``task.send_each`` (batched publishes) and runs one in-process
long-running ``Worker`` (threads, concurrency 2 by default) until all have run:

  sync       ``?pull=sync`` (the default): a ``Pull`` request per receive, as burst runs and one-shot use
  streaming  ``?pull=streaming``: ``SubscriberClient.subscribe()`` with
             ``FlowControl(max_messages=prefetch x concurrency)``

The modes alternate within each round (order flipped every round) and the medians are printed with
the ratio streaming / sync from the same run. Pub/Sub requests are counted on the client's gRPC
channel (an interceptor, per method; a StreamingPull counts once per stream opened); tasks/s runs
from the first task's start to the last's. The emulator is a Java process on the same cores, so
the figures measure it as much as cloudq: compare the ratio and the requests per task.

    python benchmarks/pubsub_throughput.py [-n 5000] [--concurrency 2] [--prefetch-multiplier 4] [--repeat 3]
                                           [--results] [--quick]

Exits non-zero only on a harness failure (a task that did not run); without the emulator or the
``gcp`` extra it prints "skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = "cloudq-bench"
MODES = ("sync", "streaming")
TARGET_RATIO = 2.0


def _interceptor() -> Any:
    import grpc  # type: ignore[import-untyped]

    class Counting(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
        """Counts gRPC calls by method name (Publish, Pull, StreamingPull, Acknowledge...)."""

        def __init__(self) -> None:
            self.counts: Counter[str] = Counter()
            self._lock = threading.Lock()

        def _count(self, details: Any) -> None:
            with self._lock:
                self.counts[details.method.rsplit("/", 1)[-1]] += 1

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            self._count(details)
            return continuation(details, request)

        def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
            self._count(details)
            return continuation(details, requests)

        def take(self) -> Counter[str]:
            with self._lock:
                counts, self.counts = self.counts, Counter()
            return counts

    return Counting()


@dataclass
class Result:
    mode: str
    n: int
    tasks_per_s: float
    cpu_ms_per_task: float
    worker_requests: Counter[str]

    @property
    def requests_per_task(self) -> float:
        return sum(self.worker_requests.values()) / self.n


def run_case(mode: str, n: int, concurrency: int, results: bool, prefetch: int | None = None) -> Result:
    from cloudq_gcp.options import PubSubOptions
    from cloudq_gcp.pubsub import PubSubBroker

    from cloudq import App
    from cloudq.runtime.worker import Worker

    unique = uuid.uuid4().hex[:8]
    counter = _interceptor()
    options = PubSubOptions(PROJECT, prefix=f"b{unique}-", ack_deadline=60, max_delivery_attempts=10, pull=mode)
    broker = PubSubBroker(options, interceptors=[counter])
    store = f"firestore://bench-{unique}?project={PROJECT}" if results else "memory://"
    app = App("bench", broker="memory://", results=store, retry_backoff=0)
    app._broker = broker  # the counted broker, instead of one built from a URL (App has no setter)
    started: list[float] = []
    done = threading.Event()

    @app.task(name="bench.noop", ignore_result=not results)
    def noop(i: int) -> int:
        started.append(time.perf_counter())
        if len(started) >= n:
            done.set()
        return i

    broker.purge("default")  # creates the topic and subscriptions before counting
    noop.send_each(range(n))
    counter.take()

    worker = Worker(app, concurrency=concurrency, prefetch_multiplier=prefetch, poll_wait_s=1.0)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("code", worker.run()), daemon=True)
    cpu0 = time.process_time()
    thread.start()
    finished = done.wait(max(60.0, n / 50))
    cpu = time.process_time() - cpu0
    worker.stop()
    thread.join(60)
    requests = counter.take()
    app.close()
    if not finished or outcome.get("code") != 0:
        raise SystemExit(f"{mode}: {len(started)} of {n} tasks ran, worker exit code {outcome.get('code')}")
    span = max(started) - min(started)
    return Result(mode, n, n / span if span > 0 else float("inf"), cpu / n * 1000, requests)


def show(counts: Counter[str], n: int) -> str:
    return ", ".join(f"{name} {count} ({count / n:.3f}/task)" for name, count in sorted(counts.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="tasks per case (default 5000)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the modes alternate within each")
    parser.add_argument("--prefetch-multiplier", type=int, default=None, help="default: the setting's (4)")
    parser.add_argument("--results", action="store_true", help="write results to Firestore (default: results off)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 tasks, one round")
    args = parser.parse_args()
    n, repeat = (300, 1) if args.quick else (args.n, args.repeat)
    try:
        import grpc  # type: ignore[import-untyped]  # noqa: F401 - the gcp extra
        from cloudq_gcp.testing import running
        from cloudq_gcp.testing.emulators import EmulatorMissing
        from google.cloud import pubsub_v1  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        print(f"pubsub_throughput: skipped: not installed ({exc.name}; pip install 'cloudq[gcp]')")
        return
    logs = Path(tempfile.mkdtemp(prefix="cloudq-bench-"))
    load_before = os.getloadavg()
    print(
        f"pubsub_throughput: {n} tasks per case, {repeat} round(s), concurrency {args.concurrency}, "
        f"prefetch multiplier {args.prefetch_multiplier or 'default'}, results {'on (Firestore)' if args.results else 'off'}; "
        f"load average {load_before[0]:.2f}"
    )
    runs: dict[str, list[Result]] = {mode: [] for mode in MODES}
    try:
        with running("pubsub", logs) as pubsub:
            os.environ[pubsub.env_var] = pubsub.env_value
            os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
            firestore = running("firestore", logs) if args.results else None
            if firestore is not None:
                emulator = firestore.__enter__()
                os.environ[emulator.env_var] = emulator.env_value
            try:
                run_case("streaming", min(n, 200), args.concurrency, args.results)  # warm-up: JIT, channels
                for round_ in range(repeat):
                    for mode in MODES if round_ % 2 == 0 else reversed(MODES):
                        result = run_case(mode, n, args.concurrency, args.results, args.prefetch_multiplier)
                        runs[mode].append(result)
                        print(
                            f"  round {round_ + 1} {mode:9}: {result.tasks_per_s:8.0f} tasks/s, "
                            f"{result.cpu_ms_per_task:.3f} ms CPU/task, "
                            f"{result.requests_per_task:.3f} Pub/Sub requests/task"
                        )
            finally:
                if firestore is not None:
                    firestore.__exit__(None, None, None)
    except EmulatorMissing as exc:
        print(f"pubsub_throughput: skipped: the emulator is not installed ({exc})")
        return
    medians = {mode: statistics.median(r.tasks_per_s for r in runs[mode]) for mode in MODES}
    print("\nmedians:")
    for mode in MODES:
        last = runs[mode][-1]
        cpu = statistics.median(r.cpu_ms_per_task for r in runs[mode])
        per_task = statistics.median(r.requests_per_task for r in runs[mode])
        print(f"  {mode:9}: {medians[mode]:8.0f} tasks/s, {cpu:.3f} ms CPU/task, {per_task:.3f} requests/task")
        print(f"             last round's requests: {show(last.worker_requests, last.n)}")
    ratio = medians["streaming"] / medians["sync"]
    verdict = "met" if ratio >= TARGET_RATIO else "missed"
    print(f"  streaming / sync: {ratio:.2f}x (target >= {TARGET_RATIO:g}x: {verdict})")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
