"""Every benchmark runs in CI at a small N, so none rots between the quiet-machine runs that
produce the figures in benchmarks/README.md. Only the harness is checked (exit 0 and the report's
lines): figures from a CI box prove nothing, and no test asserts on time. Peers that are not
installed (the ``bench`` extra) are skipped by the benchmarks themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# benchmark file, its smoke arguments, lines its report must contain
SMOKE: list[tuple[str, list[str], list[str]]] = [
    ("import_time.py", ["--quick"], ["import cloudq", "App + 20 typed tasks"]),
    ("overhead.py", ["--quick", "--only", "cloudq-memory,cloudq-sqlite-delay"], ["cloudq-memory", "tasks/s"]),
    ("lambda_overhead.py", ["--quick"], ["per record"]),
    ("canvas.py", ["--quick", "--skip-celery"], ["chord overhead", "load average after"]),
    ("profile_path.py", ["--n", "200", "--no-profile"], ["execute"]),
    ("pubsub_throughput.py", ["--quick"], ["load average"]),
    ("io_bound.py", ["--quick"], ["cloudq-async", "load average after"]),
    ("lambda_cold_start.py", ["--quick"], ["cold start", "cloudq phases"]),
    ("sqs_cost.py", ["--quick"], ["billed/task", "load average after"]),
    ("memory.py", ["--quick"], ["cloudq-threads", "peak RSS", "load average after"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "expect"), SMOKE, ids=[s[0] for s in SMOKE])
def test_benchmark_runs(script: str, args: list[str], expect: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{out[-4000:]}"
    for line in expect:
        assert line in out, f"{script}: no {line!r} in its report:\n{out[-4000:]}"
