"""Enqueue a batch, run a worker until the queues are empty, print every result."""

from __future__ import annotations

import os
import subprocess
import sys

from tasks import add, flaky_fetch, slow

results = add.send_each([(i, i * 10) for i in range(10)])  # ten tasks in one batched send
results.append(flaky_fetch.delay("https://example.com/data.json"))
results.append(slow.delay(0.5))
print(f"enqueued {len(results)} tasks; starting a worker in burst mode")

here = os.path.dirname(os.path.abspath(__file__))
subprocess.run(
    [sys.executable, "-m", "cloudq", "worker", "-A", "tasks:app", "--burst", "-c", "4", "--loglevel", "WARNING"],
    check=True,
    cwd=here,
)

for result in results:
    print(f"{result.id[:8]}  {result.status:<8} {result.get(timeout=30)!r}")
