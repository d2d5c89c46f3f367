"""Network faults between a worker and moto, through cloudq.testing.netfault.FaultProxy: refused
connections and a stalled link. The worker survives and resumes within a few seconds of the
restore, nothing is lost; a producer on the cut link gets BackendUnavailable within its deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fault_harness import env_int, starts, wait_until

from cloudq import App
from cloudq.errors import BackendUnavailable
from cloudq.testing.netfault import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.aws, pytest.mark.timeout(180)]

OUTAGE_S = env_int("FAULTS_OUTAGE_S", 4)
LEASE_S = 10
RECOVERY_BOUND_S = 5.0  # "within a few seconds of the restore"
SEND_TIMEOUT_S = 2  # the producer's total deadline (?send_timeout=), far under the consumer's 65 s read timeout
PRODUCER_DEADLINE_S = SEND_TIMEOUT_S + 3.0  # plus slack for a loaded machine


@pytest.fixture
def proxy(sqs_target):
    port = int(sqs_target.app.broker.queue("default").url.split(":")[2].split("/")[0])
    with FaultProxy("127.0.0.1", port, lifetime=170) as running:
        yield running


@pytest.mark.parametrize("fault", ["refuse", "stall"])
def test_a_worker_behind_a_cut_link_resumes_soon_after_the_restore(sqs_target, proxy, workers, tmp_path: Path, fault):
    journal = tmp_path / "journal.txt"
    canary = sqs_target.module.canary
    through = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
    worker = workers("-c", "2", "--poll-wait", "0.5", lease_s=LEASE_S, env=through)
    before = [canary.delay(str(journal), f"before{i}") for i in range(5)]
    assert wait_until(lambda: len(starts(journal)) == 5, 30), worker.output()[-3000:]
    getattr(proxy, fault)()
    during = [canary.delay(str(journal), f"during{i}") for i in range(5)]  # straight to moto
    time.sleep(OUTAGE_S)
    assert worker.alive, worker.output()[-3000:]
    proxy.restore()
    restored = time.time()
    # a receive in flight at the cut may have leased messages on moto whose response the cut lost:
    # those come back after their lease (10 s), as on real SQS; the worker itself resumes at once
    after = canary.delay(str(journal), "after")  # sent once the link is back: shows when the worker resumed
    assert wait_until(lambda: len(starts(journal)) == 11, LEASE_S + 30, interval=0.1), worker.output()[-3000:]
    runs = starts(journal)
    firsts = sorted(runs[f"during{i}"][0].at - restored for i in range(5))
    recovery = runs["after"][0].at - restored
    lost_in_cut = sum(1 for at in firsts if at > RECOVERY_BOUND_S)
    print(
        f"\n[faults] {fault} for {OUTAGE_S}s between worker and moto: resumed {recovery:.1f}s after the restore; "
        f"{lost_in_cut} of 5 leased by a receive whose response the cut lost ran after their lease, "
        f"the last {firsts[-1]:.1f}s after the restore"
    )
    assert [h.get(timeout=10) for h in before + during + [after]] == [f"before{i}" for i in range(5)] + [
        f"during{i}" for i in range(5)
    ] + ["after"]
    assert worker.alive
    assert recovery < RECOVERY_BOUND_S, f"recovery took {recovery:.1f}s"
    assert firsts[-1] < LEASE_S + RECOVERY_BOUND_S, f"a message cut in flight came back {firsts[-1]:.1f}s after"


@pytest.mark.parametrize("fault", ["refuse", "stall"])
def test_a_producer_on_a_cut_link_gets_backend_unavailable_within_its_deadline(sqs_target, proxy, prefix, fault):
    app = App(
        "faults-producer",
        broker=f"sqs://?prefix={prefix}&wait=1&send_timeout={SEND_TIMEOUT_S}&endpoint_url=http://127.0.0.1:{proxy.port}",
        results=f"dynamodb://{prefix}results?endpoint_url=http://127.0.0.1:{proxy.port}",
    )
    task = app.task(name="fault_app.canary")(lambda path, token: token)
    task.delay("/dev/null", "warm")  # the queue is resolved while the link is up
    getattr(proxy, fault)()
    outcome: dict[str, object] = {}

    def produce() -> None:
        started = time.monotonic()
        try:
            task.delay("/dev/null", "cut")
            outcome["result"] = "sent"
        except Exception as exc:
            outcome["result"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    thread.join(PRODUCER_DEADLINE_S + 5)
    proxy.restore()  # lets a producer still blocked finish, so no thread outlives the test for long
    print(f"\n[faults] producer on a link that went {fault}: {outcome}")
    assert not thread.is_alive(), f"the producer was still blocked after {PRODUCER_DEADLINE_S + 5}s"
    assert isinstance(outcome["result"], BackendUnavailable), outcome
    assert float(outcome["seconds"]) <= PRODUCER_DEADLINE_S  # type: ignore[arg-type]
    thread.join(30)
    app.close()
