"""A redrive killed part-way (SIGKILL, in its own process) leaves every message in the dead letters
or on the queue: some may be in both (a duplicate, said in the docs), none in neither."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from cloudq_aws.sqs import SQSBroker

from cloudq.backends.sqlite import REDRIVE_BATCH, SQLiteBroker
from cloudq.config import Settings
from cloudq.interfaces import Broker, DeadLetterAdmin, OutgoingMessage
from cloudq.testing import eventually, receive_until, unique_queue

CHILD = Path(__file__).with_name("redrive_child.py")


def bury(broker: Broker, queue: str, count: int) -> list[str]:
    """``count`` messages sent, received and dead-lettered; their ids."""
    ids = broker.send(queue, [OutgoingMessage(f"m{i}".encode()) for i in range(count)])
    got = receive_until(broker, queue, count, lease_s=300, timeout=60)
    assert len(got) == count
    broker.dead_letter(got, "ValueError: no")
    return ids


def kill_when_stopped(*args: str) -> None:
    """Run the child until it reports its stop point, then SIGKILL it."""
    child = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "stopped", f"the redrive ended before its stop point: {line!r}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


def on_queue(broker: Broker, queue: str, expected: int) -> Counter[str]:
    got = receive_until(broker, queue, expected, lease_s=300, timeout=30)
    assert receive_until(broker, queue, 1, lease_s=300, timeout=1.0) == [], "more on the queue than expected"
    return Counter(d.message_id for d in got)


@pytest.mark.timeout(120)
def test_sqlite_redrive_killed_inside_a_batch(tmp_path: Path) -> None:
    path, queue, total = tmp_path / "cloudq.db", unique_queue(), 3 * REDRIVE_BATCH
    broker = SQLiteBroker(str(path))
    ids = bury(broker, queue, total)
    # the second batch's transaction is open, its rows read, when the child stops
    kill_when_stopped("sqlite", str(path), queue, str(REDRIVE_BATCH + REDRIVE_BATCH // 2))
    dead = Counter(d.message_id for d in broker.dead_letters(queue, 10 * total))
    assert sum(dead.values()) == total - REDRIVE_BATCH  # the first batch moved, the open one did not
    back = on_queue(broker, queue, REDRIVE_BATCH)
    assert dead + back == Counter(ids)  # each exactly once: SQLite moves a batch in one transaction
    assert isinstance(broker, DeadLetterAdmin)
    assert broker.redrive(queue) == total - REDRIVE_BATCH  # a second run finishes the job
    broker.close()


@pytest.mark.aws
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("operation", "n", "moved", "in_both"),
    [
        ("ReceiveMessage", 2, 10, 0),  # the 2nd batch received from the dead letters, not sent yet
        ("SendMessageBatch", 3, 30, 10),  # the 3rd batch sent to the queue, not deleted from the dead letters
        ("DeleteMessageBatch", 3, 30, 0),  # the 3rd batch deleted, the 4th not received yet
    ],
)
def test_sqs_redrive_killed_part_way(prefix: str, operation: str, n: int, moved: int, in_both: int) -> None:
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    queue, total = "kill", 100
    ids = bury(broker, queue, total)
    kill_when_stopped("sqs", prefix, queue, str(n), operation)
    back = on_queue(broker, queue, moved)
    assert sum(back.values()) == moved and max(back.values()) == 1
    # what the killed run held comes back to the dead letters when its (2 s) lease ends
    dead = eventually(
        lambda: Counter(d.message_id for d in broker.dead_letters(queue, 1000)),
        lambda c: sum(c.values()) == total - moved + in_both,
        timeout=30,
    )
    assert sum(dead.values()) == total - moved + in_both and max(dead.values()) == 1
    assert set(dead) | set(back) == set(ids)  # none in neither
    assert len(set(dead) & set(back)) == in_both
    broker.close()
