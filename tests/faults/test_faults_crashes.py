"""Workers killed under load: SIGKILL at seeded random moments (0 lost; duplicates only of tasks a
killed worker had started; idempotent tasks never re-run after SUCCESS), and SIGTERM with a full
prefetch buffer (the unstarted messages run on another worker at once, spending no attempt)."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest
from fault_harness import Target, env_int, starts, wait_until

from cloudq import states

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEED = env_int("FAULTS_SEED", 10)


def test_kill9_of_busy_workers_loses_nothing_and_duplicates_only_what_a_killed_worker_started(
    target: Target, workers, tmp_path: Path
):
    if target.name == "pubsub":
        pytest.skip("Pub/Sub's shortest lease is 10 s: each kill would cost that much (covered on sqlite and SQS)")
    rng = random.Random(SEED)
    journal = tmp_path / "journal.txt"
    app = target.app
    count, kills = env_int("FAULTS_KILL_TASKS", 60), env_int("FAULTS_KILLS", 3)
    plain = [target.module.work.delay(str(journal), f"w{i}", 0.1) for i in range(count)]
    ideal = [target.module.once.delay(str(journal), f"o{i}", 0.1) for i in range(count // 3)]
    handles = plain + ideal
    args = ("-c", "2", "--prefetch-multiplier", "2", "--poll-wait", "0.5")
    live = [workers(*args, lease_s=target.lease_s), workers(*args, lease_s=target.lease_s)]
    killed_pids: set[int] = set()
    for _ in range(kills):
        time.sleep(rng.uniform(0.5, 2.0))
        victim = live.pop(rng.randrange(len(live)))
        victim.kill9()
        killed_pids.add(victim.pid)
        live.append(workers(*args, lease_s=target.lease_s))

    def finished() -> bool:
        return all((r := app.results.get(h.id)) is not None and r.state == states.SUCCESS for h in handles)

    assert wait_until(finished, 60, interval=0.5), live[-1].output()[-3000:]
    runs = starts(journal)
    tokens = [f"w{i}" for i in range(count)] + [f"o{i}" for i in range(count // 3)]
    lost = [t for t in tokens if t not in runs]
    duplicated = {t: [s.pid for s in runs[t]] for t in tokens if len(runs.get(t, [])) > 1}
    print(
        f"\n[faults] kill -9 on {target.name}: {len(tokens)} tasks, {kills} kills, lost={len(lost)} "
        f"duplicates={len(duplicated)} (seed {SEED})"
    )
    assert not lost
    for token, pids in duplicated.items():  # every run but the last was cut short by a kill
        assert set(pids[:-1]) <= killed_pids, f"{token} ran again though its first worker lived: {pids}"
    for i, handle in enumerate(ideal):
        record = app.results.get(handle.id)
        assert record is not None and record.finished_at is not None
        late = [s for s in runs[f"o{i}"] if s.at > record.finished_at]
        assert not late, f"idempotent o{i} ran again after its SUCCESS"
    assert all(w.alive for w in live)


def test_sigterm_hands_the_prefetch_buffer_to_another_worker_at_once(target: Target, workers, tmp_path: Path):
    journal = tmp_path / "journal.txt"
    app = target.app
    work = target.module.work
    slow = work.delay(str(journal), "slow", 3.0)
    wait_until(lambda: False, 0.5)  # the slow one is first in line
    quick = [work.delay(str(journal), f"q{i}-{uuid.uuid4().hex[:6]}", 0.0) for i in range(3)]
    # a 60 s lease: messages not handed back would wait that long
    first = workers("-c", "1", "--prefetch-multiplier", "4", "--poll-wait", "0.5", lease_s=60)
    assert wait_until(lambda: "slow" in starts(journal), 30), first.output()[-3000:]
    assert wait_until(lambda: first.output().count("event=received") >= 4, 10), first.output()[-3000:]
    second = workers("-c", "2", "--poll-wait", "0.5", lease_s=60)
    signalled = time.time()
    first.terminate()
    assert wait_until(lambda: all(app.results.get(h.id) is not None for h in quick), 20), second.output()[-3000:]
    runs = starts(journal)
    quick_tokens = [t for t in runs if t.startswith("q")]
    latest = max(runs[t][0].at for t in quick_tokens) - signalled
    attempts = [h.get(timeout=5) for h in quick]
    print(
        f"\n[faults] SIGTERM on {target.name}: prefetched tasks started on the other worker {latest:.2f}s after the signal"
    )
    assert {runs[t][0].pid for t in quick_tokens} == {second.pid}
    assert attempts == [1, 1, 1], "handing back an unstarted message spent an attempt"
    # handed back, not left to its 60 s lease: the figure is printed above; the bound only tells the two apart
    assert latest < 30.0
    assert first.wait(30) == 0, first.output()[-3000:]
    assert slow.get(timeout=5) == 1
