"""Per-task framework overhead: no-op tasks, enqueued while the workers work, cloudq beside its peers.

Every case is the same work: a no-op task ``noop(i: int) -> int`` sent N times by a producer
that runs while the worker(s) consume, timed from the first enqueue to the last task done.

  in-process, one worker thread   cloudq memory:// (results on; ignore_result), Celery 5 memory://
                                  (results off), dramatiq StubBroker
  SQLite, two worker processes    cloudq sqlite (delay(); send_each() in batches), huey SqliteHuey, both
                                  at cloudq's default synchronous=NORMAL; and both at FULL (huey's
                                  default: an fsync per commit) with delay()

Each case runs in a fresh interpreter, one after the other (``--repeat`` interleaves rounds and
reports the median). The table gives tasks/s, µs per task and the ratio cloudq/peer of the same
run. Targets (benchmarks/README.md, Targets): >= 15,000/s in-process with validation on, >= 6,000/s on
SQLite with two worker processes.

    python benchmarks/overhead.py [--n 20000] [--only cloudq-memory,celery] [--quick] [--repeat 3]

Exit status 0 when every case ran (a missed target is reported, not an error), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from _harness import HERE, LOGLEVEL_ENV, Measurement, child_env, median_run, python, select_cases


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[int, float], Measurement]
    target: float | None = None  # tasks/s


def _memory(ignore_result: bool) -> Callable[[int, float], Measurement]:
    def run(n: int, timeout: float) -> Measurement:
        import _cloudq

        return _cloudq.memory(n, timeout, ignore_result=ignore_result)

    return run


def _sqlite(batched: bool, synchronous: str = "normal") -> Callable[[int, float], Measurement]:
    def run(n: int, timeout: float) -> Measurement:
        import _cloudq

        return _cloudq.sqlite(n, timeout, batched=batched, synchronous=synchronous)

    return run


def _peer(name: str) -> Callable[[int, float], Measurement]:
    def run(n: int, timeout: float) -> Measurement:
        import _peers

        return _peers.PEERS[name](n, timeout)

    return run


IN_PROCESS_TARGET = 15_000.0
SQLITE_TARGET = 6_000.0
CASES = {
    case.name: case
    for case in (
        Case("cloudq-memory", _memory(False), IN_PROCESS_TARGET),
        Case("cloudq-memory-noresult", _memory(True), IN_PROCESS_TARGET),
        Case("celery", _peer("celery")),
        Case("dramatiq", _peer("dramatiq")),
        Case("cloudq-sqlite-delay", _sqlite(False), SQLITE_TARGET),
        Case("cloudq-sqlite-map", _sqlite(True), SQLITE_TARGET),
        Case("huey", _peer("huey")),
        Case("cloudq-sqlite-full", _sqlite(False, "full")),
        Case("huey-full", _peer("huey-full")),
    )
}
PAIRS = [
    ("cloudq-memory", "celery"),
    ("cloudq-memory", "dramatiq"),
    ("cloudq-memory-noresult", "celery"),
    ("cloudq-memory-noresult", "dramatiq"),
    ("cloudq-sqlite-delay", "huey"),
    ("cloudq-sqlite-map", "huey"),
    ("cloudq-sqlite-full", "huey-full"),
]


def run_child(name: str, n: int, timeout: float, loglevel: str) -> Measurement:
    """Run one case in a fresh interpreter; its last stdout line is the measurement as JSON."""
    cmd = [python(), str(HERE / "overhead.py"), "--run-case", name, "--n", str(n), "--timeout", str(timeout)]
    env = child_env(**{LOGLEVEL_ENV: loglevel})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout * 2 + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"case {name} failed (exit {proc.returncode}):\n{tail}")
    data = json.loads(lines[-1])
    return Measurement(data["system"], data["n"], data["seconds"])


def report(results: dict[str, list[Measurement]], errors: dict[str, str]) -> None:
    rows = {name: median_run(runs) for name, runs in results.items()}
    width = max([len(m.system) for m in rows.values()] + [6])
    print(f"{'case':24} {'system':{width}} {'tasks/s':>9} {'µs/task':>9}  target")
    for name, m in rows.items():
        target = CASES[name].target
        mark = ""
        if target:
            verdict = "ok" if m.per_second >= target else f"MISS ({m.per_second / target:.0%})"
            mark = f">= {target:,.0f} {verdict}"
        print(f"{name:24} {m.system:{width}} {m.per_second:9,.0f} {m.us_per_task:9.1f}  {mark}")
    for name, error in errors.items():
        print(f"{name:24} FAILED: {error.splitlines()[0] if error else '?'}")
    print()
    for ours, peer in PAIRS:
        if ours in rows and peer in rows:
            print(f"ratio {ours} / {peer}: {rows[ours].per_second / rows[peer].per_second:.2f}x")


def select(only: str | None) -> list[str]:
    return select_cases(only, list(CASES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, help="tasks per case (default 20,000; 5,000 with --quick)")
    parser.add_argument("--only", help=f"comma-separated case names or prefixes: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="a CI smoke run: small N")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the median is reported")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a case may take")
    parser.add_argument(
        "--worker-loglevel",
        default="WARNING",
        help="log level of the cloudq sqlite worker processes (default WARNING; INFO logs every task event)",
    )
    parser.add_argument("--run-case", help=argparse.SUPPRESS)  # internal: run one case here
    opts = parser.parse_args(argv)
    n = opts.n or (5_000 if opts.quick else 20_000)

    if opts.run_case:
        m = CASES[opts.run_case].run(n, opts.timeout)
        print(json.dumps({"system": m.system, "n": m.n, "seconds": m.seconds}), flush=True)
        return 0

    names = select(opts.only)
    load = os.getloadavg()[0]
    print(f"overhead: N={n:,} per case, {opts.repeat} round(s), {os.cpu_count()} CPUs, load average {load:.2f}")
    results: dict[str, list[Measurement]] = {}
    errors: dict[str, str] = {}
    for _ in range(opts.repeat):
        for name in names:
            if name in errors:
                continue
            try:
                m = run_child(name, n, opts.timeout, opts.worker_loglevel)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors[name] = str(exc)
                print(f"  {name}: FAILED\n{exc}", file=sys.stderr)
                continue
            results.setdefault(name, []).append(m)
            print(f"  {name}: {m.per_second:,.0f} tasks/s ({m.seconds:.2f} s)", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f} (figures from a busy machine are noisy)\n")
    report(results, errors)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
