"""What the canvas costs: a 100-task chord and a 20-step chain, cloudq vs Celery 5 on one moto server.

Each workflow runs on cloudq's SQLite default and on SQS + DynamoDB (a moto server this script
starts), then through Celery 5 (SQS broker via kombu, DynamoDB result backend) on the same moto
server in the same run. Every task appends a timestamp to a file, so completion is watched
without AWS calls; wall time runs from the first task's start to the last task's end (worker
start-up excluded for both systems). Requests are counted by the moto server process itself,
from the first send to the worker's end (cloudq: a burst worker; Celery: ``celery worker -c 2``
stopped once the last task is done), so they include the idle receives of each worker.

  group   the chord's 100 header tasks as a plain group: the baseline the chord is compared with
  chord   ``chord(add.s(i, i) for i in range(100))(tsum.s())``
  chain   ``add.s(0, 1) | add.s(1) | ... `` (20 steps; the result is 20)

Chord overhead = (chord requests - group requests) / header tasks. Target (issue 12): <= 2 extra
requests per header task, and fewer than Celery's.

    python benchmarks/canvas.py [--chord 100] [--chain 20] [--skip-celery] [--skip-sqlite]

Celery needs ``pip install 'celery[sqs]'`` (boto3 + pycurl), in a venv of its own if you like
(benchmarks/README.md, Canvas).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudq_aws.testing import MotoServer, RequestCounts
from sqs_cost import CELERY_MODULE as CELERY_APP
from sqs_cost import _celery_worker, stamps

TARGET_CHORD_EXTRA = 2.0  # requests per header task over a plain group
SERVICES = ("sqs", "dynamodb")

# sqs_cost's Celery app (tuned polling, as its "celery tuned" run) with the canvas's two tasks
CELERY_MODULE = (
    CELERY_APP
    + """

def mark():
    with open(DONE, "a") as f:
        f.write(f"{time.time()}\\n")


@app.task(name="bench.add")
def add(x, y):
    mark()
    return x + y


@app.task(name="bench.tsum")
def tsum(values):
    mark()
    return sum(values)
"""
)


@dataclass
class Run:
    system: str  # "cloudq sqlite", "cloudq moto", "celery moto"
    workflow: str  # group, chord, chain
    tasks: int  # header tasks, or chain steps
    seconds: float = 0.0
    requests: RequestCounts = field(default_factory=RequestCounts)
    note: str = ""

    def billed(self) -> int:
        return sum(self.requests.service(s) for s in SERVICES)

    def per_task(self, service: str | None = None) -> float:
        return (self.billed() if service is None else self.requests.service(service)) / self.tasks


def workflows(add: Any, tsum: Any, n_chord: int, n_chain: int) -> dict[str, tuple[int, int, Callable[[], Any]]]:
    """name -> (tasks counted per, task bodies run, send) for cloudq's and Celery's canvas alike
    (both take Celery's spelling)."""
    if "celery" in type(add).__module__:
        from celery import chain, chord, group
    else:
        from cloudq import chain, chord, group
    return {
        "group": (n_chord, n_chord, lambda: group(add.s(i, i) for i in range(n_chord)).apply_async()),
        "chord": (n_chord, n_chord + 1, lambda: chord(add.s(i, i) for i in range(n_chord))(tsum.s())),
        "chain": (n_chain, n_chain, lambda: chain(add.s(0, 1), *[add.s(1) for _ in range(n_chain - 1)]).apply_async()),
    }


def expected(workflow: str, n: int) -> Any:
    return {"group": [2 * i for i in range(n)], "chord": n * (n - 1), "chain": n}[workflow]


def elapsed(done: Path, runs: int) -> float:
    times = stamps(done)
    assert len(times) == runs, f"{len(times)} task runs stamped, expected {runs}"
    return max(times) - min(times)


# -- cloudq ---------------------------------------------------------------------------------------


def run_cloudq(system: str, broker: str, results: str, workdir: Path, n_chord: int, n_chain: int,
               server: MotoServer | None) -> list[Run]:  # fmt: skip
    from cloudq import App
    from cloudq.runtime.worker import Worker

    done = workdir / f"cloudq-{uuid.uuid4().hex[:6]}.txt"
    app = App("bench", broker=broker, results=results, retry_backoff=0)

    def stamp() -> None:
        with open(done, "a") as f:
            f.write(f"{time.time()}\n")

    @app.task(name="bench.add")
    def add(x: int, y: int) -> int:
        stamp()
        return x + y

    @app.task(name="bench.tsum")
    def tsum(values: list[int]) -> int:
        stamp()
        return sum(values)

    if server:
        app.broker.queue("default")  # type: ignore[attr-defined]  # created before counting, as by `cloudq deploy`
    app.results.get("warm-up")
    runs = []
    for name, (tasks, bodies, send) in workflows(add, tsum, n_chord, n_chain).items():
        done.unlink(missing_ok=True)
        run = Run(system, name, tasks)
        with server.count_requests() if server else contextlib.nullcontext(RequestCounts()) as counts:
            handle = send()
            code = Worker(app, burst=True, concurrency=2).run()
        assert code == 0, f"{system} {name}: worker exit code {code}"
        run.requests = counts
        run.seconds = elapsed(done, bodies)
        got = handle.get(timeout=30)
        assert got == expected(name, tasks), f"{system} {name}: {got!r}"
        runs.append(run)
        print(f"  done: {system} {name}: {run.seconds:.2f} s", flush=True)
    app.close()
    return runs


# -- celery ---------------------------------------------------------------------------------------


def run_celery(server: MotoServer, workdir: Path, n_chord: int, n_chain: int, stall_s: float) -> list[Run]:
    tag = uuid.uuid4().hex[:6]
    done = workdir / f"celery-{tag}.txt"
    (workdir / "celery_bench_tasks.py").write_text(textwrap.dedent(CELERY_MODULE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
        "BENCH_BROKER": f"sqs://testing:testing@{server.host}:{server.port}",
        "BENCH_BACKEND": f"dynamodb://testing:testing@{server.host}:{server.port}/ce{tag}-results",
        "BENCH_TRANSPORT": json.dumps(
            {"region": "us-east-1", "queue_name_prefix": f"ce{tag}-", "polling_interval": 0, "wait_time_seconds": 1}
        ),
        "BENCH_PREFETCH": "10",
        "BENCH_DONE": str(done),
        "BENCH_READY": str(workdir / "celery-ready"),
    }
    os.environ.update(env)
    sys.path.insert(0, str(workdir))
    import celery_bench_tasks as tasks  # type: ignore[import-not-found]

    warm = tasks.add.delay(1, 1)  # creates the queue and the results table before counting
    _celery_worker(env, workdir, done, 1, stall_s)
    assert warm.get(timeout=30) == 2
    runs = []
    for name, (n, bodies, send) in workflows(tasks.add, tasks.tsum, n_chord, n_chain).items():
        done.unlink(missing_ok=True)
        run = Run("celery moto", name, n)
        with server.count_requests() as run.requests:
            handle = send()
            _, stalled = _celery_worker(env, workdir, done, bodies, stall_s)
        if stalled:
            run.note = f"stalled: {len(stamps(done))} of {bodies} task runs in {stall_s:.0f}s"
        else:
            run.seconds = elapsed(done, bodies)
            got = handle.get(timeout=30)
            assert got == expected(name, n), f"celery {name}: {got!r}"
        runs.append(run)
        print(f"  done: celery moto {name}: {run.seconds:.2f} s {run.note}", flush=True)
    tasks.app.close()
    return runs


# -- report ---------------------------------------------------------------------------------------


def report(runs: list[Run]) -> None:
    by = {(r.system, r.workflow): r for r in runs}
    print(f"\n{'system':<15}{'workflow':<10}{'tasks':>6}{'wall s':>8}{'req/task':>10}{'sqs/task':>10}{'ddb/task':>10}")
    for r in runs:
        print(f"{r.system:<15}{r.workflow:<10}{r.tasks:>6}{r.seconds:>8.2f}{r.per_task():>10.2f}"
              f"{r.per_task('sqs'):>10.2f}{r.per_task('dynamodb'):>10.2f}  {r.note}")  # fmt: skip
    print("\nrequests per task by operation, counted at the moto server:")
    for r in runs:
        if r.requests:
            ops = ", ".join(f"{k} {v / r.tasks:.2f}" for k, v in r.requests.most_common())
            print(f"  {r.system} {r.workflow}: {ops}")
    print("\nchord overhead (chord - group requests, per header task):")
    extra = {}
    for system in ("cloudq moto", "celery moto"):
        chord, grp = by.get((system, "chord")), by.get((system, "group"))
        if chord and grp and not chord.note and not grp.note:
            extra[system] = (chord.billed() - grp.billed()) / chord.tasks
            print(f"  {system}: {extra[system]:.2f}")
    if "cloudq moto" in extra:
        ok = extra["cloudq moto"] <= TARGET_CHORD_EXTRA
        print(f"  target <= {TARGET_CHORD_EXTRA} extra per header task: {'ok' if ok else 'MISSED'}")
    if len(extra) == 2:
        print(f"  fewer than Celery's: {'ok' if extra['cloudq moto'] < extra['celery moto'] else 'MISSED'}")
    for workflow in ("chord", "chain"):
        ours, theirs = by.get(("cloudq moto", workflow)), by.get(("celery moto", workflow))
        if ours and theirs and theirs.seconds and ours.seconds:
            print(f"  {workflow}: cloudq/celery requests x{ours.billed() / max(1, theirs.billed()):.2f}, "
                  f"wall time x{ours.seconds / theirs.seconds:.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chord", type=int, default=100, help="header tasks of the chord (and the group)")
    parser.add_argument("--chain", type=int, default=20, help="steps of the chain")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--stall", type=float, default=30.0, help="seconds without progress before a run is cut short")
    parser.add_argument("--quick", action="store_true", help="CI smoke: a chord of 10, a chain of 5")
    args = parser.parse_args()
    if args.quick:
        args.chord, args.chain = 10, 5
    if not args.skip_celery and importlib.util.find_spec("celery") is None:
        print("celery: skipped: not installed (pip install 'celery[sqs]')")
        args.skip_celery = True
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    workdir = Path(tempfile.mkdtemp(prefix="cloudq-canvas-bench-"))
    runs = []
    if not args.skip_sqlite:
        url = f"sqlite:///{workdir / 'canvas.db'}"
        runs += run_cloudq("cloudq sqlite", url, url, workdir, args.chord, args.chain, None)
    with MotoServer(workdir=workdir) as server:
        os.environ.update(server.environment())
        print(f"moto server {server.endpoint}; work in {workdir}", flush=True)
        tag = uuid.uuid4().hex[:6]
        runs += run_cloudq("cloudq moto", f"sqs://?prefix=cq{tag}-", f"dynamodb://cq{tag}-results", workdir,
                           args.chord, args.chain, server)  # fmt: skip
        if not args.skip_celery:
            runs += run_celery(server, workdir, args.chord, args.chain, args.stall)
        report(runs)
    print(f"load average after: {os.getloadavg()[0]:.2f} (figures from a busy machine are noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
