"""What ``import cloudq`` costs over a bare interpreter, beside the peers, in the same run.

Each case is a fresh ``python -c`` process; the cases are interleaved round by round so machine
noise hits them alike, and the median of the rounds is reported minus the median of
``python -c pass``. A warm-up round first writes the bytecode caches. Also checks, in a
subprocess, which heavy modules ``import cloudq`` pulls in: click, boto3/botocore and google.*
must never load (benchmarks/README.md, Targets); pydantic is reported.

    python benchmarks/import_time.py [--runs 21] [--quick] [--strict] [--detail]

Exit status: 1 when ``import cloudq`` loads a forbidden module, or with ``--strict`` when a target
is missed; otherwise 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_MS = 50.0
APP_TARGET_MS = 45.0  # issue 15: an app module with App + 20 typed tasks, ahead of dramatiq
TASKS = 20
BASELINE = "python -c pass"
CLOUDQ = "import cloudq"
FORBIDDEN = ("click", "boto3", "botocore", "aiobotocore", "google")
REPORTED = ("pydantic", "pydantic_core", *FORBIDDEN)


def _tasks(decorator: str, typed: bool) -> str:
    """TASKS task definitions under ``decorator``, typed (cloudq validates them) or not."""
    sig = "a: int, b: str = 'x', c: list[float] | None = None" if typed else "a, b='x', c=None"
    return "".join(f"{decorator}\ndef task{i}({sig}):\n    return a\n" for i in range(TASKS))


APP_CASE = f"cloudq App + {TASKS} typed tasks"
CASES: dict[str, str] = {
    BASELINE: "pass",
    CLOUDQ: "import cloudq",
    "cloudq App + one task": (
        "import cloudq\n"
        "app = cloudq.App('bench', broker='memory://')\n"
        "@app.task()\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
    ),
    APP_CASE: "import cloudq\napp = cloudq.App('bench', broker='memory://')\n" + _tasks("@app.task()", True),
    "from pydantic import BaseModel": "from pydantic import BaseModel",
    "celery app + one task": (
        "from celery import Celery\n"
        "app = Celery('bench', broker='memory://')\n"
        "@app.task\n"
        "def add(a, b):\n"
        "    return a + b\n"
    ),
    f"celery app + {TASKS} tasks": "from celery import Celery\napp = Celery('bench', broker='memory://')\n"
    + _tasks("@app.task", False),
    "import dramatiq": "import dramatiq",
    "dramatiq StubBroker + one actor": (
        "import dramatiq\n"
        "from dramatiq.brokers.stub import StubBroker\n"
        "dramatiq.set_broker(StubBroker())\n"
        "@dramatiq.actor\n"
        "def add(a, b):\n"
        "    return a + b\n"
    ),
    f"dramatiq StubBroker + {TASKS} actors": (
        "import dramatiq\nfrom dramatiq.brokers.stub import StubBroker\ndramatiq.set_broker(StubBroker())\n"
        + _tasks("@dramatiq.actor", False)
    ),
    f"huey MemoryHuey + {TASKS} tasks": "from huey import MemoryHuey\nhuey = MemoryHuey('bench')\n"
    + _tasks("@huey.task()", False),
    "huey MemoryHuey + one task": (
        "from huey import MemoryHuey\nhuey = MemoryHuey('bench')\n@huey.task()\ndef add(a, b):\n    return a + b\n"
    ),
}

# the realistic module import of an app counts against the same budget when the app is built
TARGETS = {CLOUDQ: TARGET_MS, APP_CASE: APP_TARGET_MS}
PEER_RATIOS = (
    (APP_CASE, f"dramatiq StubBroker + {TASKS} actors"),
    (APP_CASE, f"celery app + {TASKS} tasks"),
    (APP_CASE, f"huey MemoryHuey + {TASKS} tasks"),
    ("cloudq App + one task", "celery app + one task"),
    ("cloudq App + one task", "dramatiq StubBroker + one actor"),
    (CLOUDQ, "from pydantic import BaseModel"),
)


# the children write and use bytecode caches, as an installed package has them: with
# PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) every run of a package installed
# from source would compile it again, timing the compiler instead of the import
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def run_once(code: str, cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, env=ENV)
    return time.perf_counter() - started


def measure(runs: int, cwd: str, cases: dict[str, str] = CASES) -> dict[str, float]:
    """Median wall ms per case (name -> code), interleaved rounds after one warm-up round."""
    for code in cases.values():
        run_once(code, cwd)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, code in cases.items():
            samples[name].append(run_once(code, cwd))
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def _modules_after(code: str, cwd: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, check=True, capture_output=True, text=True, env=ENV
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def loaded_modules(code: str, cwd: str) -> list[str]:
    """Which of the REPORTED top-level packages ``code`` loads beyond a bare interpreter.

    The bare interpreter is subtracted: a ``*-nspkg.pth`` file in site-packages (functions-framework
    ships one) puts an empty ``google`` namespace module in every interpreter at startup.
    """
    added = _modules_after(code, cwd) - _modules_after("pass", cwd)
    present = {name.split(".")[0] for name in added}
    return [name for name in REPORTED if name in present]


PHASES = """
import json, time
t0 = time.perf_counter()
import cloudq
t1 = time.perf_counter()
from pydantic import BaseModel
t2 = time.perf_counter()
app = cloudq.App('bench', broker='memory://')
t3 = time.perf_counter()
@app.task()
def add(a: int, b: int) -> int:
    return a + b
t4 = time.perf_counter()
add.validator
t5 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]))
"""
PHASE_NAMES = ("import cloudq", "import pydantic", "App(...)", "@app.task", "first delay(): build the validator")


def app_phases(cwd: str, runs: int) -> list[float]:
    """Median ms of each step of a realistic app module, measured inside one process."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PHASES], cwd=cwd, check=True, capture_output=True, text=True, env=ENV
        )
        samples.append(json.loads(out.stdout))
    return [statistics.median(column) * 1000 for column in zip(*samples, strict=True)]


def import_tree(code: str, cwd: str, top: int) -> list[tuple[int, int, str]]:
    """The ``top`` modules with the largest cumulative import time (µs) under ``-X importtime``."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=cwd, check=True, capture_output=True, text=True, env=ENV
    ).stderr
    rows = []
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2].rstrip()))
    return sorted(rows, key=lambda row: row[1], reverse=True)[:top]


def installed(cases: dict[str, str]) -> dict[str, str]:
    """The cases whose package is importable here: peers come from the ``bench`` extra."""
    kept = {}
    for name, code in cases.items():
        words = code.split()
        package = words[1].split(".")[0] if len(words) > 1 and words[0] in ("import", "from") else ""
        if package and importlib.util.find_spec(package) is None:
            print(f"{name}: skipped: {package} is not installed")
            continue
        kept[name] = code
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="interleaved rounds per case (default 21)")
    parser.add_argument("--quick", action="store_true", help="5 rounds: a CI smoke run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a time target is missed")
    parser.add_argument(
        "--detail", action="store_true", help="also print the app module's steps and the slowest imports of cloudq"
    )
    opts = parser.parse_args(argv)
    runs = 5 if opts.quick else opts.runs
    load_before = os.getloadavg()[0]

    # an empty directory: no pyproject.toml / cloudq.toml is read, and no stray module shadows a package
    with tempfile.TemporaryDirectory(prefix="cloudq-import-") as cwd:
        cases = installed(CASES)
        medians = measure(runs, cwd, cases)
        heavy = {name: loaded_modules(code, cwd) for name, code in cases.items() if "cloudq" in name}
        tree = import_tree(CASES[CLOUDQ], cwd, 15) if opts.detail else []
        phases = app_phases(cwd, runs) if opts.detail else []

    base = medians[BASELINE]
    version = sys.version.split()[0]
    print(f"import time, median of {runs} interleaved runs (python {version}); bare interpreter {base:.1f} ms")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'case':36} {'wall ms':>9} {'over pass':>10} {'target':>8}")
    missed = []
    for name, wall in medians.items():
        if name == BASELINE:
            continue
        over = wall - base
        target = TARGETS.get(name)
        mark = ""
        if target is not None:
            mark = f"<= {target:.0f}" + (" ok" if over <= target else " MISS")
            if over > target:
                missed.append(f"{name}: {over:.1f} ms > {target:.0f} ms")
        print(f"{name:36} {wall:9.1f} {over:10.1f} {mark:>8}")
    print()
    for ours, peer in PEER_RATIOS:
        if peer not in medians:
            print(f"ratio  {ours} / {peer}: skipped (not installed)")
            continue
        a, b = medians[ours] - base, medians[peer] - base
        print(f"ratio  {ours} / {peer}: {a / b:.2f}" if b > 0 else f"ratio  {ours} / {peer}: n/a")
    print()
    forbidden_found = []
    for name, modules in heavy.items():
        print(f"heavy modules after `{name}`: {', '.join(modules) or 'none'}")
        if name == CLOUDQ:
            forbidden_found = [m for m in modules if m in FORBIDDEN]
    if phases:
        print("\nwhere an app module's time goes (in-process, median ms):")
        for name, ms in zip(PHASE_NAMES, phases, strict=True):
            print(f"  {name:36} {ms:7.1f}")
    if tree:
        print("\nslowest imports under `import cloudq` (-X importtime, one run, µs):")
        print(f"{'self':>8} {'cumulative':>11}  module")
        for self_us, cum_us, module in tree:
            print(f"{self_us:8d} {cum_us:11d}  {module}")
    if forbidden_found:
        print(f"\nFAIL: import cloudq loads {', '.join(forbidden_found)}", file=sys.stderr)
        return 1
    if missed:
        print("\ntarget missed: " + "; ".join(missed), file=sys.stderr)
        return 1 if opts.strict else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
