"""A Pub/Sub emulator restarted under a running worker process (it forgets every topic and
subscription): the worker survives, recreates its queue by itself (create_missing), and runs
everything sent after the restart exactly once. The producer may not create anything, so only
the worker can have recreated the subscription."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fault_harness import Target, env_int, starts, wait_until

from cloudq import App, states

pytestmark = [pytest.mark.slow, pytest.mark.gcp, pytest.mark.timeout(180)]

TASKS = env_int("FAULTS_RESTART_TASKS", 5)
DOWN_S = 2.0  # the emulator is away this long before it comes back on the same port
RECREATE_BOUND_S = 15.0  # the worker's receive backoff is capped at 2 s; the emulator's pulls wait up to poll-wait


def subscription_exists(path: str) -> bool:
    from google.api_core.exceptions import NotFound
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.get_subscription(subscription=path, timeout=5)
        return True
    except NotFound:
        return False
    finally:
        subscriber.close()


def test_a_worker_survives_an_emulator_restart_and_resumes_by_itself(own_pubsub_target, workers, tmp_path: Path):
    target, own = own_pubsub_target
    assert isinstance(target, Target)
    journal = tmp_path / "journal.txt"
    worker = workers("-c", "2", "--poll-wait", "0.5", lease_s=target.lease_s)
    before = [target.module.canary.delay(str(journal), f"before{i}") for i in range(TASKS)]
    assert wait_until(lambda: len(starts(journal)) == TASKS, 30), worker.output()[-3000:]

    own.restart(DOWN_S)
    restarted = time.monotonic()
    subscription = target.raw.subscription  # type: ignore[attr-defined]
    assert not subscription_exists(subscription), "the restarted emulator kept the subscription"
    recreated = wait_until(lambda: subscription_exists(subscription) or not worker.alive, RECREATE_BOUND_S)
    recreate_s = time.monotonic() - restarted
    assert worker.alive, worker.output()[-3000:]
    assert recreated, (
        f"the worker did not recreate its subscription within {RECREATE_BOUND_S}s\n{worker.output()[-3000:]}"
    )

    app = target.app
    producer = App("faults-producer", broker=app.settings.broker, results=app.settings.results, create_missing=False)
    try:
        canary = producer.task(name="fault_app.canary")(lambda path, token: token)
        after = [canary.delay(str(journal), f"after{i}") for i in range(TASKS)]
        assert wait_until(lambda: len(starts(journal)) == 2 * TASKS, 30), worker.output()[-3000:]
        resumed_s = time.monotonic() - restarted
        time.sleep(1.0)  # a duplicate delivery would show up in the journal by now
        runs = starts(journal)
        print(
            f"\n[faults] Pub/Sub emulator restart ({DOWN_S:.0f}s down): worker recreated its subscription "
            f"{recreate_s:.1f}s after the restart, ran everything sent after it within {resumed_s:.1f}s; "
            f"lost=0 duplicates={sum(len(r) - 1 for r in runs.values())}"
        )
        assert all(len(runs[f"after{i}"]) == 1 for i in range(TASKS)), runs
        assert all((r := app.results.get(h.id)) is not None and r.state == states.SUCCESS for h in before + after)
        assert worker.alive, worker.output()[-3000:]
    finally:
        producer.close()
