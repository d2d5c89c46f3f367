"""What SQS work costs: API requests per task (counted at the server) and tasks/s, cloudq vs Celery 5.

One moto server process serves every run, one after the other, so both systems meet the same
moto (whose SQS slows as a queue grows: compare requests and CPU per task, then throughput).
Each run enqueues N no-op tasks (each appends a timestamp to a file, so completion is watched
without AWS calls), then one worker with concurrency 2 works until all are done, with results
in DynamoDB:

  cloudq batch    app.send_many / task.map (SendMessageBatch), then ``Worker(burst=True)``
  cloudq delay    one ``.delay()`` per task (SendMessage), then the same worker
  celery default  ``.delay()`` per task, then ``celery worker -c 2`` (prefork) at its defaults:
                  SQS transport (wait_time_seconds=10, polling_interval=1), DynamoDB result backend
  celery tuned    the same with polling_interval=0, wait_time_seconds=1, prefetch multiplier 10

Requests are counted by the moto server process itself, per operation, and so are *billed*
requests: SQS bills each 64 KiB chunk of a request's messages (those a SendMessage(Batch) carries
or a ReceiveMessage returns) as one request. Each task carries a string argument of ``--body-kb``
KB (1 KB by default; ``--body-kb 1,20,200`` runs every case at each size). tasks/s is measured from
the first task's timestamp to the last's (worker start-up excluded for both); worker CPU per task
is the CPU time of the worker process (and its children) over the same work.

    python benchmarks/sqs_cost.py [-n 2000] [--body-kb 1,20,200] [--celery-n N] [--skip-celery]
                                  [--skip-tuned] [--skip-default] [--quick]

Targets (benchmarks/README.md, Targets): <= 0.25 SQS requests per task on the worker side, <= 0.35 end to
end for batch-sent work (floor 0.30) and <= 0.35 billed at 1 KB, <= 1.05 DynamoDB requests per task,
worker CPU per task <= 0.25x Celery tuned, >= 5x Celery's tasks/s at its defaults and >= 2x tuned.
Celery needs ``pip install 'celery[sqs]'``; without it the Celery runs print "skipped: not installed".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudq_aws.testing import MotoServer, RequestCounts, stop_process

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_WORKER_SQS = 0.25
TARGET_BATCH_SQS = 0.35
TARGET_BATCH_BILLED_1KB = 0.35
TARGET_CPU_VS_TUNED = 0.25
TARGET_DYNAMODB = 1.05
TARGET_VS_DEFAULT = 5.0
TARGET_VS_TUNED = 2.0

CELERY_MODULE = """
import json, os, time
from celery import Celery
from celery.signals import worker_ready

app = Celery("bench", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BACKEND"])
app.conf.update(
    broker_transport_options=json.loads(os.environ["BENCH_TRANSPORT"]),
    worker_prefetch_multiplier=int(os.environ["BENCH_PREFETCH"]),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
DONE = os.environ["BENCH_DONE"]


@worker_ready.connect
def ready(**_):
    open(os.environ["BENCH_READY"], "w").close()


@app.task(name="bench.stamp")
def stamp(i, pad=""):
    with open(DONE, "a") as f:
        f.write(f"{time.time()}\\n")
    return i
"""


@dataclass
class Run:
    name: str
    n: int
    body_kb: int = 1
    produce: RequestCounts = field(default_factory=RequestCounts)
    work: RequestCounts = field(default_factory=RequestCounts)
    work_s: float = 0.0  # first task start to last task done
    cpu_s: float = 0.0  # worker CPU over the work
    note: str = ""

    @property
    def tasks_per_s(self) -> float:
        return self.n / self.work_s if self.work_s > 0 else float("nan")

    def per_task(self, counts: RequestCounts, service: str) -> float:
        return counts.service(service) / self.n

    def billed(self, counts: RequestCounts) -> float:
        """SQS billed requests per task."""
        return counts.billed.service("sqs") / self.n

    def e2e(self, billed: bool = False) -> float:
        """SQS (billed) requests per task, producer and worker."""
        if billed:
            return self.billed(self.produce) + self.billed(self.work)
        return self.per_task(self.produce, "sqs") + self.per_task(self.work, "sqs")


def stamps(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [float(line) for line in path.read_text().split() if line]


def wait_for_stamps(path: Path, n: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        got = stamps(path)
        if len(got) >= n:
            return got
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"only {len(got)} of {n} tasks done")
        time.sleep(0.05)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants (Linux /proc)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


# -- cloudq ---------------------------------------------------------------------------------------


def run_cloudq(
    server: MotoServer, n: int, batch: bool, workdir: Path, prefetch: int | None = None, body_kb: int = 1
) -> Run:
    from cloudq import App
    from cloudq.runtime.worker import Worker

    tag = uuid.uuid4().hex[:6]
    done = workdir / f"cloudq-{tag}.txt"
    app = App("bench", broker=f"sqs://?prefix=cq{tag}-", results=f"dynamodb://cq{tag}-results", retry_backoff=0)

    @app.task(name="bench.stamp")
    def stamp(i: int, pad: str = "") -> int:
        with open(done, "a") as f:
            f.write(f"{time.time()}\n")
        return i

    pad = "x" * (1000 * body_kb)
    run = Run(f"cloudq {'batch' if batch else 'delay'}", n, body_kb)
    app.broker.queue("default")  # resources exist before counting, as after `cloudq deploy`
    app.results.get("warm-up")
    with server.count_requests() as run.produce:
        if batch:
            handles = stamp.send_each([(i, pad) for i in range(n)])
        else:
            handles = [stamp.delay(i, pad) for i in range(n)]
    worker = Worker(app, burst=True, concurrency=2, prefetch_multiplier=prefetch)
    cpu = time.process_time()
    with server.count_requests() as run.work:
        code = worker.run()
    run.cpu_s = time.process_time() - cpu
    assert code == 0, f"worker exit code {code}"
    times = wait_for_stamps(done, n, 10)
    run.work_s = max(times) - min(times)
    assert [h.get(timeout=10) for h in handles[:: max(1, n // 20)]] == list(range(n))[:: max(1, n // 20)]
    app.close()
    return run


# -- celery ---------------------------------------------------------------------------------------


def run_celery(server: MotoServer, n: int, tuned: bool, workdir: Path, stall_s: float, body_kb: int = 1) -> Run:
    tag = uuid.uuid4().hex[:6]
    done = workdir / f"celery-{tag}.txt"
    module = workdir / "celery_bench_tasks.py"
    module.write_text(textwrap.dedent(CELERY_MODULE))
    transport: dict[str, object] = {"region": "us-east-1", "queue_name_prefix": f"ce{tag}-"}
    if tuned:
        transport.update(polling_interval=0, wait_time_seconds=1)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
        "BENCH_BROKER": f"sqs://testing:testing@{server.host}:{server.port}",
        "BENCH_BACKEND": f"dynamodb://testing:testing@{server.host}:{server.port}/ce{tag}-results",
        "BENCH_TRANSPORT": json.dumps(transport),
        "BENCH_PREFETCH": "10" if tuned else "4",
        "BENCH_DONE": str(done),
        "BENCH_READY": str(workdir / "celery-ready"),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sys.path.insert(0, str(workdir))
    try:
        import importlib

        tasks = importlib.import_module("celery_bench_tasks")
        tasks = importlib.reload(tasks)
        run = Run(f"celery {'tuned' if tuned else 'default'}", n, body_kb)
        pad = "x" * (1000 * body_kb)
        warm = tasks.stamp.delay(-1)  # creates the queue and the results table before counting
        _celery_worker(env, workdir, done, 1, stall_s)
        warm.get(timeout=30)
        done.unlink()
        with server.count_requests() as run.produce:
            for i in range(n):
                tasks.stamp.delay(i, pad)
        with server.count_requests() as run.work:
            run.cpu_s, stalled = _celery_worker(env, workdir, done, n, stall_s)
        times = stamps(done)
        run.work_s = max(times) - min(times)
        if stalled:  # per-task figures are per task done; the rest is reported
            run.note = f"stalled: {len(times)} of {n} done, the rest leased and not run for {stall_s:.0f}s"
            run.n = len(times)
        tasks.app.close()
        return run
    finally:
        sys.path.remove(str(workdir))
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _celery_worker(env: dict[str, str], workdir: Path, done: Path, n: int, stall_s: float) -> tuple[float, bool]:
    """Run ``celery worker -c 2`` until ``n`` tasks are done, or until none finished for ``stall_s``.
    Returns its CPU seconds after start-up and whether it stalled."""
    ready = Path(env["BENCH_READY"])
    ready.unlink(missing_ok=True)
    with open(workdir / "celery-worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_bench_tasks", "worker", "-c", "2",
             "-l", os.environ.get("BENCH_CELERY_LOGLEVEL", "WARNING"),
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        started = None
        progress, moved = 0, time.monotonic()
        while progress < n:
            if process.poll() is not None:
                raise RuntimeError(f"celery worker exited with {process.returncode}; see {workdir}/celery-worker.log")
            if started is None and ready.exists():
                started = tree_cpu(process.pid)
            time.sleep(0.05)
            now = len(stamps(done))
            if now > progress:
                progress, moved = now, time.monotonic()
            elif time.monotonic() - moved > stall_s and started is not None:
                return tree_cpu(process.pid) - started, True
        return tree_cpu(process.pid) - (started or 0.0), False
    finally:
        stop_process(process, timeout=30)


# -- report ---------------------------------------------------------------------------------------


def ops(counts: RequestCounts, n: int) -> str:
    return ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def billed_ops(counts: RequestCounts, n: int) -> str:
    return ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(counts.of("sqs").items(), key=lambda kv: -kv[1]))


def report(runs: list[Run]) -> None:
    print(
        f"\n{'run':<16}{'body':>6}{'tasks':>7}{'tasks/s':>9}{'cpu ms/task':>13}{'sqs/task':>10}{'sqs/task':>10}"
        f"{'billed/task':>13}{'billed/task':>13}{'ddb/task':>10}"
    )
    print(
        f"{'':<16}{'':>6}{'':>7}{'':>9}{'(worker)':>13}{'(worker)':>10}{'(e2e)':>10}"
        f"{'(worker)':>13}{'(e2e)':>13}{'(worker)':>10}"
    )
    for r in runs:
        print(
            f"{r.name:<16}{f'{r.body_kb}KB':>6}{r.n:>7}{r.tasks_per_s:>9.1f}{1000 * r.cpu_s / r.n:>13.3f}"
            f"{r.per_task(r.work, 'sqs'):>10.3f}{r.e2e():>10.3f}{r.billed(r.work):>13.3f}{r.e2e(billed=True):>13.3f}"
            f"{r.per_task(r.work, 'dynamodb'):>10.3f}"
        )
    for r in runs:
        if r.note:
            print(f"  {r.name} {r.body_kb}KB: {r.note}")
    print("\nrequests per task by operation, counted at the moto server (billed: SQS, 64 KiB chunks):")
    for r in runs:
        name = f"{r.name} {r.body_kb}KB"
        print(f"  {name}: producer: {ops(r.produce, r.n)}")
        print(f"  {' ' * len(name)}  worker:   {ops(r.work, r.n)}")
        print(f"  {' ' * len(name)}  billed:   producer {billed_ops(r.produce.billed, r.n)}; "
              f"worker {billed_ops(r.work.billed, r.n)}")  # fmt: skip
    sizes = sorted({r.body_kb for r in runs})
    print("\ntargets (benchmarks/README.md, Targets):")
    for kb in sizes:
        by_name = {r.name: r for r in runs if r.body_kb == kb}
        targets(by_name, kb)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def targets(by_name: dict[str, Run], kb: int) -> None:
    for name in ("cloudq batch", "cloudq delay"):
        r = by_name.get(name)
        if r is None:
            continue
        worker_sqs = r.per_task(r.work, "sqs")
        ddb = r.per_task(r.work, "dynamodb")
        print(f"  {name} {kb}KB: worker SQS/task {worker_sqs:.3f} (target <= {TARGET_WORKER_SQS}) "
              f"{verdict(worker_sqs <= TARGET_WORKER_SQS)}; DynamoDB/task {ddb:.3f} (target <= {TARGET_DYNAMODB}) "
              f"{verdict(ddb <= TARGET_DYNAMODB)}")  # fmt: skip
    batch = by_name.get("cloudq batch")
    if batch:
        e2e, billed = batch.e2e(), batch.e2e(billed=True)
        line = f"  cloudq batch {kb}KB: end-to-end SQS/task {e2e:.3f}"
        if kb == 1:
            line += (f" (target <= {TARGET_BATCH_SQS}, floor 0.30) {verdict(e2e <= TARGET_BATCH_SQS)}; billed "
                     f"{billed:.3f} (target <= {TARGET_BATCH_BILLED_1KB}) {verdict(billed <= TARGET_BATCH_BILLED_1KB)}")  # fmt: skip
        else:
            line += f"; billed {billed:.3f}"
        print(line)
    for peer, target in (("celery default", TARGET_VS_DEFAULT), ("celery tuned", TARGET_VS_TUNED)):
        other = by_name.get(peer)
        if other is None:
            continue
        for name in ("cloudq batch", "cloudq delay"):
            r = by_name.get(name)
            if r is None:
                continue
            ratio = r.tasks_per_s / other.tasks_per_s
            cpu = (r.cpu_s / r.n) / max(1e-9, other.cpu_s / other.n)
            cpu_target = f" (target <= {TARGET_CPU_VS_TUNED}) {verdict(cpu <= TARGET_CPU_VS_TUNED)}"
            print(f"  {name} vs {peer} {kb}KB: tasks/s x{ratio:.1f} (target >= {target}) {verdict(ratio >= target)}"
                  f"; SQS requests x{r.e2e() / max(1e-9, other.e2e()):.2f}"
                  f", billed x{r.e2e(billed=True) / max(1e-9, other.e2e(billed=True)):.2f}; DynamoDB requests "
                  f"x{r.per_task(r.work, 'dynamodb') / max(1e-9, other.per_task(other.work, 'dynamodb')):.2f}"
                  f"; worker CPU/task x{cpu:.2f}{cpu_target if peer == 'celery tuned' else ''}")  # fmt: skip


def celery_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("celery", "kombu", "boto3", "pycurl"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, help="tasks per cloudq run (default 2000; --quick: 50)")
    parser.add_argument("--celery-n", type=int, help="tasks per Celery run (default: -n)")
    parser.add_argument("--body-kb", default="1", help="task argument sizes in KB, comma-separated (default 1)")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-cloudq", action="store_true")
    parser.add_argument("--prefetch-multiplier", type=int, help="cloudq worker prefetch multiplier (default: settings)")
    parser.add_argument("--stall", type=float, default=30.0, help="seconds without progress before a run is cut short")
    parser.add_argument("--skip-tuned", action="store_true", help="run Celery at its defaults only")
    parser.add_argument("--skip-default", action="store_true", help="run Celery tuned only")
    parser.add_argument("--quick", action="store_true", help="CI smoke: N=50 (Celery tuned only, N=30), 1 KB")
    args = parser.parse_args()
    n = args.n or (50 if args.quick else 2000)
    celery_n = args.celery_n or (30 if args.quick else n)
    sizes = [int(kb) for kb in args.body_kb.split(",") if kb.strip()]
    celery_modes: tuple[bool, ...] = () if args.skip_celery else tuple(
        tuned for tuned in (False, True)
        if not (tuned and args.skip_tuned) and not (not tuned and (args.skip_default or args.quick))
    )  # fmt: skip
    if celery_modes and not celery_installed():
        print("celery: skipped: not installed (pip install 'celery[sqs]')")
        celery_modes = ()
    workdir = Path(tempfile.mkdtemp(prefix="cloudq-sqs-cost-"))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with MotoServer(workdir=workdir) as server:
        os.environ.update(server.environment())
        print(f"moto server {server.endpoint} (pid {server.process.pid if server.process else '?'}); work in {workdir}")
        runs = []
        for kb in sizes:
            for batch in () if args.skip_cloudq else (True, False):
                runs.append(run_cloudq(server, n, batch, workdir, args.prefetch_multiplier, kb))
                print(f"  done: {runs[-1].name} {kb}KB: {runs[-1].tasks_per_s:.1f} tasks/s", flush=True)
            for tuned in celery_modes:
                runs.append(run_celery(server, celery_n, tuned, workdir, args.stall, kb))
                print(f"  done: {runs[-1].name} {kb}KB: {runs[-1].tasks_per_s:.1f} tasks/s", flush=True)
        report(runs)
    print(f"load average after: {os.getloadavg()[0]:.2f} (figures from a busy machine are noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
