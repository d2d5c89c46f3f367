"""Worker memory: the whole process tree's resident size while a worker runs N no-op tasks.

Each system gets N tasks (``noop(i: int) -> int``, results on) queued on a broker its worker
processes share, then runs them with 4 at a time; a sampler reads /proc every 20 ms for the
worker's main process and all its descendants:

  cloudq    ``cloudq worker -c 4`` (threads, the default pool) and ``-P process -c 4`` (children, as
            Celery's prefork) on the SQLite default (one WAL file for broker and results)
  celery    ``celery worker -P prefork -c 4`` on kombu's filesystem transport, results in the
            filesystem backend (no broker server here: Redis and RabbitMQ are not installed),
            fed while it runs with at most 200 tasks waiting (the transport lists its folder per message)
  dramatiq  its brokers are RabbitMQ and Redis only; the StubBroker lives in one process, so its
            figure is one process with a 4-thread Worker fed in-process (the closest it runs
            here), labelled as such

Reported per system: the peak of the tree's summed RSS (shared pages counted in each process,
as ``ps`` would), the summed PSS at the end (shared pages split between the processes that
share them: the fairer figure for forked children), and the number of processes. The ratio
cloudq/Celery of the same run is printed for both. Linux only (/proc).

    python benchmarks/memory.py [--n 10000] [--only cloudq,celery,dramatiq] [--quick]

Exit status 0 when every case that could run ran (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _harness import HERE, Producer, child_env, python, select_cases, spawn, stop, wait_until

CONCURRENCY = 4
SAMPLE_S = 0.02
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class Memory:
    system: str
    peak_rss_kib: int
    pss_kib: int
    processes: int
    seconds: float


# -- /proc ---------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def _rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.most_processes = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        pids = descendants(self.pid)
        self.most_processes = max(self.most_processes, len(pids))
        self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in pids))

    def finish(self) -> tuple[int, int]:
        """(peak summed RSS, summed PSS now) in KiB, sampled once more before returning."""
        self._done.set()
        self.join(5)
        self.sample()
        return self.peak_kib, sum(_pss_kib(p) for p in descendants(self.pid))


def run_worker(
    cmd: list[str], tmp: str, env: dict[str, str], done: Callable[[], bool], timeout: float, what: str
) -> tuple[int, int, int, float]:
    """Start the worker ``cmd`` on work already queued, sample its tree until ``done()``, stop it:
    (peak summed RSS KiB, summed PSS KiB at the end, most processes seen, seconds)."""
    worker = spawn(cmd, tmp, env, Path(tmp) / "worker.log")
    sampler = TreeSampler(worker.pid)
    sampler.start()
    started = time.perf_counter()
    try:
        end = wait_until(done, timeout, what, interval=0.05)
        peak, pss = sampler.finish()
    except BaseException:
        print((Path(tmp) / "worker.log").read_text()[-2000:], file=sys.stderr)
        raise
    finally:
        stop([worker])
    return peak, pss, sampler.most_processes, end - started


# -- the systems ---------------------------------------------------------------------------------


def cloudq_worker(n: int, timeout: float, pool: str) -> Memory:
    from _cloudq import define

    from cloudq import App

    with tempfile.TemporaryDirectory(prefix="bench-mem-cloudq-") as tmp:
        url = f"sqlite:///{Path(tmp).resolve() / 'bench.db'}"
        app = App("bench", broker=url, results=url)
        noop = define(app)
        queue = app.queue_for(noop)
        for start in range(0, n, 500):  # queued first: the worker's memory, not the producer's pace
            noop.send_each(range(start, min(start + 500, n)))
        env = child_env(CLOUDQ_BROKER=url, CLOUDQ_RESULTS=url)
        cmd = [python(), "-m", "cloudq", "worker", "-A", "_cloudq_app:app", "-c", str(CONCURRENCY), "-P", pool]
        cmd += ["--loglevel", "WARNING"]

        def drained() -> bool:
            stats = app.broker.stats(queue)
            return not (stats.ready or stats.in_flight or stats.delayed)

        try:
            peak, pss, procs, seconds = run_worker(cmd, tmp, env, drained, timeout, f"cloudq worker -P {pool}")
        finally:
            app.close()
    return Memory(f"cloudq worker -P {pool} -c {CONCURRENCY} (sqlite)", peak, pss, procs, seconds)


CELERY_APP = """
import os
from celery import Celery
root = os.environ["BENCH_CELERY_DIR"]
app = Celery("bench", set_as_current=False)
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={"data_folder_in": root + "/q", "data_folder_out": os.environ.get("BENCH_CELERY_OUT", root + "/q"),
                              "processed_folder": root + "/done", "store_processed": False,
                              "control_folder": root + "/control",
                              "polling_interval": 0.01},
    result_backend="file://" + root + "/results",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

@app.task(name="bench.noop")
def noop(i: int) -> int:
    return 1
"""


CELERY_BACKLOG = 200  # tasks queued ahead of Celery's worker at most (see celery_prefork)


def celery_prefork(n: int, timeout: float) -> Memory:
    """kombu's filesystem transport lists and sorts its whole folder for every message it takes,
    so 10,000 queued files run at a few tasks per second: this process feeds the worker in
    batches instead, keeping at most CELERY_BACKLOG waiting (its memory is not measured), each
    batch written to a staging folder and renamed into the queue (a file being written reads as
    bad JSON and stops the worker's consumer)."""
    with tempfile.TemporaryDirectory(prefix="bench-mem-celery-") as tmp:
        for sub in ("q", "staging", "done", "results"):
            (Path(tmp) / sub).mkdir()
        (Path(tmp) / "celery_bench_app.py").write_text(CELERY_APP)
        env = child_env(BENCH_CELERY_DIR=tmp)
        env["PYTHONPATH"] = os.pathsep.join([tmp, env["PYTHONPATH"]])
        os.environ["BENCH_CELERY_DIR"] = tmp
        os.environ["BENCH_CELERY_OUT"] = staging = os.path.join(tmp, "staging")
        sys.path.insert(0, tmp)
        try:
            import celery_bench_app
        finally:
            sys.path.remove(tmp)
        results = Path(tmp) / "results"
        sent = 0

        def stored() -> bool:
            nonlocal sent
            done = len(os.listdir(results))
            if sent < n and sent - done < CELERY_BACKLOG // 2:
                for i in range(sent, min(n, sent + CELERY_BACKLOG // 2)):
                    celery_bench_app.noop.delay(i)
                sent = min(n, sent + CELERY_BACKLOG // 2)
                # written aside, then renamed in: the transport must never read a half-written file
                for name in os.listdir(staging):
                    os.rename(os.path.join(staging, name), os.path.join(tmp, "q", name))
            return done >= n

        cmd = [python(), "-m", "celery", "-A", "celery_bench_app:app", "worker", "-P", "prefork"]
        cmd += ["-c", str(CONCURRENCY), "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
        cmd += ["--without-heartbeat"]
        try:
            peak, pss, procs, seconds = run_worker(cmd, tmp, env, stored, timeout, "celery prefork")
        finally:
            sys.modules.pop("celery_bench_app", None)
    system = (
        f"celery worker -P prefork -c {CONCURRENCY} (filesystem transport, fed {CELERY_BACKLOG} ahead; file results)"
    )
    return Memory(system, peak, pss, procs, seconds)


def dramatiq_in_process(n: int, timeout: float) -> Memory:
    """In a child interpreter (fresh memory): StubBroker, a Worker of 4 threads, a result per task."""
    code = f"import memory, json; print(json.dumps(memory._dramatiq_child({n}, {timeout})))"
    proc = subprocess.run([python(), "-c", code], env=child_env(), capture_output=True, text=True, timeout=timeout + 60)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"dramatiq child failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    data = json.loads(lines[-1])
    system = f"dramatiq StubBroker Worker({CONCURRENCY} threads), one process (no cross-process broker here)"
    return Memory(system, data["peak"], data["pss"], 1, data["seconds"])


def _dramatiq_child(n: int, timeout: float) -> dict[str, float]:
    import logging

    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import StubBackend

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    broker = StubBroker()
    broker.add_middleware(Results(backend=StubBackend()))
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, actor_name="bench_noop", max_retries=0, store_results=True)
    def noop(i: int) -> int:
        return 1

    producer = Producer(lambda chunk: [noop.send(i) for i in chunk], n, 500)
    producer.run()
    sampler = TreeSampler(os.getpid())
    sampler.start()
    started = time.perf_counter()
    worker = dramatiq.Worker(broker, worker_threads=CONCURRENCY, worker_timeout=100)
    worker.start()
    broker.join(noop.queue_name, timeout=int(timeout * 1000))
    seconds = time.perf_counter() - started
    worker.stop()
    peak, pss = sampler.finish()
    return {"peak": peak, "pss": pss, "seconds": seconds}


CASES: dict[str, tuple[Callable[[int, float], Memory], str | None]] = {
    "cloudq-threads": (lambda n, t: cloudq_worker(n, t, "threads"), None),
    "cloudq-process": (lambda n, t: cloudq_worker(n, t, "process"), None),
    "celery-prefork": (celery_prefork, "celery"),
    "dramatiq": (dramatiq_in_process, "dramatiq"),
}
PAIRS = [("cloudq-threads", "celery-prefork"), ("cloudq-process", "celery-prefork")]


def _installed(package: str | None) -> bool:
    if package is None:
        return True
    import importlib.util

    return importlib.util.find_spec(package) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, help="tasks per case (default 10,000; 500 with --quick)")
    parser.add_argument("--only", help=f"comma-separated case names or prefixes: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="a CI smoke run: small N")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a case may take")
    opts = parser.parse_args(argv)
    if not Path("/proc/self/statm").exists():
        print("memory: skipped: needs Linux /proc")
        return 0
    n = opts.n or (500 if opts.quick else 10_000)
    names = select_cases(opts.only, list(CASES))
    sys.path.insert(0, str(HERE))
    print(
        f"memory: N={n:,} tasks per case, -c {CONCURRENCY}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    rows: dict[str, Memory] = {}
    failed = False
    for name in names:
        run, package = CASES[name]
        if not _installed(package):
            print(f"  {name}: skipped: not installed")
            continue
        try:
            rows[name] = m = run(n, opts.timeout)
        except (RuntimeError, TimeoutError, subprocess.SubprocessError, AssertionError) as exc:
            failed = True
            print(f"  {name}: FAILED: {exc}", file=sys.stderr)
            continue
        print(f"  {name}: peak RSS {m.peak_rss_kib / 1024:.1f} MiB, PSS {m.pss_kib / 1024:.1f} MiB", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(
        f"{'case':16} {'peak RSS MiB':>12} {'PSS MiB':>8} {'procs':>5} {'tasks/s':>8}  system (tasks/s counts the worker's start-up)"
    )
    for name, m in rows.items():
        rate = n / m.seconds if m.seconds else 0.0
        line = f"{name:16} {m.peak_rss_kib / 1024:12.1f} {m.pss_kib / 1024:8.1f} {m.processes:5d} {rate:8,.0f}"
        print(f"{line}  {m.system}")
    print()
    for ours, peer in PAIRS:
        if ours in rows and peer in rows:
            a, b = rows[ours], rows[peer]
            verdict = "ok" if a.peak_rss_kib <= b.peak_rss_kib else "MISS"
            print(
                f"ratio {ours} / {peer}: peak RSS {a.peak_rss_kib / b.peak_rss_kib:.2f}x, "
                f"PSS {a.pss_kib / b.pss_kib:.2f}x  (target <= 1.00x: {verdict})"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
