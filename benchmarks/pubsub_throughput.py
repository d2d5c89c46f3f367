"""What Pub/Sub + Firestore work costs: requests per task and tasks/s through Google's emulators.

Starts the Pub/Sub and Firestore emulators (cloudq_gcp.testing), then per case enqueues N no-op
tasks with ``task.map`` (batched publishes) and runs one in-process ``Worker(burst=True)`` with
concurrency 2 until they are done:

  results on   ``noop(i) -> i``, each result written to Firestore
  results off  the same task with ``ignore_result=True``

Pub/Sub requests are counted on the client's gRPC channel (an interceptor, per method); Firestore
requests by the result store (one per get/create/update/delete). tasks/s is measured from the
first task's start to the last's (worker start-up excluded); worker CPU per task is this process's
CPU time over the work phase (the emulators are separate processes). The emulators are Java
processes on the same 2 cores, so tasks/s here measures them as much as cloudq: compare requests
per task first.

    python benchmarks/pubsub_throughput.py [-n 2000] [--concurrency 2] [--only results-on,results-off]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
from cloudq_gcp.firestore import FirestoreResultStore
from cloudq_gcp.options import PubSubOptions
from cloudq_gcp.pubsub import PubSubBroker
from cloudq_gcp.testing import running

from cloudq import App
from cloudq.runtime.worker import Worker

PROJECT = "cloudq-bench"


class CountingInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts unary gRPC requests by method name (Publish, Pull, Acknowledge, ModifyAckDeadline...)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        with self._lock:
            self.counts[details.method.rsplit("/", 1)[-1]] += 1
        return continuation(details, request)

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts


@dataclass
class Result:
    case: str
    n: int
    concurrency: int
    produce_s: float
    work_s: float
    tasks_per_s: float
    cpu_ms_per_task: float
    produce_requests: Counter[str]
    worker_requests: Counter[str]
    firestore_requests: Counter[str]

    def per_task(self, counts: Counter[str]) -> float:
        return sum(counts.values()) / self.n


def run_case(case: str, n: int, concurrency: int) -> Result:
    unique = uuid.uuid4().hex[:8]
    counter = CountingInterceptor()
    broker = PubSubBroker(
        PubSubOptions(PROJECT, prefix=f"b{unique}-", ack_deadline=60, max_delivery_attempts=10), interceptors=[counter]
    )
    app = App("bench", broker="memory://", results=f"firestore://bench-{unique}?project={PROJECT}", retry_backoff=0)
    app._broker = broker  # the counted broker, instead of one built from a URL (App has no setter)
    started: list[float] = []

    @app.task(name="bench.noop", ignore_result=case == "results-off")
    def noop(i: int) -> int:
        started.append(time.time())
        return i

    store = app.results
    assert isinstance(store, FirestoreResultStore)
    broker.purge("default")  # creates the topic and subscriptions before counting
    store.get("warm-up")
    counter.take()
    store.requests.clear()

    t0 = time.perf_counter()
    handles = noop.send_each(range(n))
    produce_s = time.perf_counter() - t0
    produce_requests = counter.take()

    cpu0, t0 = time.process_time(), time.perf_counter()
    worker = Worker(app, burst=True, concurrency=concurrency, poll_wait_s=1.0)
    code = worker.run()
    work_s, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    worker_requests = counter.take()
    firestore_requests = Counter(store.requests)
    if code != 0 or len(started) != n:
        raise SystemExit(f"{case}: worker exit code {code}, {len(started)} of {n} tasks ran")
    if case == "results-on":
        sample = handles[:: max(1, n // 50)]
        wrong = [h.id for h, i in zip(sample, range(0, n, max(1, n // 50)), strict=True) if h.get(timeout=10) != i]
        if wrong:
            raise SystemExit(f"{case}: wrong results for {wrong[:5]}")
    span = max(started) - min(started)
    app.close()
    return Result(
        case, n, concurrency, produce_s, work_s, n / span if span > 0 else float("inf"), cpu / n * 1000,
        produce_requests, worker_requests, firestore_requests,
    )  # fmt: skip


def report(result: Result) -> None:
    def show(counts: Counter[str]) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"

    print(f"\n== {result.case}: {result.n} tasks, worker concurrency {result.concurrency}")
    print(f"  produce (task.map): {result.produce_s:.2f} s; Pub/Sub requests: {show(result.produce_requests)}")
    print(
        f"  work: {result.work_s:.2f} s wall incl. start-up and the burst's empty check; {result.tasks_per_s:.0f} tasks/s"
    )
    print(f"  worker CPU: {result.cpu_ms_per_task:.2f} ms per task (this process)")
    print(f"  worker Pub/Sub requests: {show(result.worker_requests)}")
    print(f"  Firestore requests: {show(result.firestore_requests)}")
    produce, work, store = (
        result.per_task(c) for c in (result.produce_requests, result.worker_requests, result.firestore_requests)
    )
    print(
        f"  requests per task: Pub/Sub {produce + work:.3f} (producer {produce:.3f}, worker {work:.3f}); Firestore {store:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="tasks per case (default 2000)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--only", default="results-on,results-off", help="comma-separated cases")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="cloudq-bench-"))
    with running("pubsub", logs) as pubsub, running("firestore", logs) as firestore:
        os.environ[pubsub.env_var] = pubsub.env_value
        os.environ[firestore.env_var] = firestore.env_value
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        for case in args.only.split(","):
            report(run_case(case.strip(), args.n, args.concurrency))


if __name__ == "__main__":
    main()
