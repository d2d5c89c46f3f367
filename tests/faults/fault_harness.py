"""The fault suite's harness: worker processes, raw access to each backend's queue, and the ledger
that accounts for every message sent (done, dead-lettered with a reason, or lost).

Raw senders bypass cloudq's producer on purpose: a poison message comes from a producer outside
cloudq, with whatever body and transport attributes it likes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from cloudq import states
from cloudq.envelope import Envelope

HERE = Path(__file__).parent
_RECEIVED = re.compile(r"event=received .*message_id=(\S+)")


def env_int(name: str, default: int) -> int:
    """A count the CI keeps small and a heavier local run raises (``FAULTS_*``)."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout``; return whether it came true (never raises)."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


# -- worker processes ---------------------------------------------------------------------------


class WorkerProc:
    """``python -m cloudq worker -A fault_app:app`` in its own process, logging to a file."""

    def __init__(self, log: Path, *args: str, lease_s: float, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "CLOUDQ_VISIBILITY_TIMEOUT": str(lease_s),
            **(env or {}),
        }
        command = [sys.executable, "-m", "cloudq", "worker", "-A", "fault_app:app", "--loglevel", "INFO", *args]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(command, cwd=log.parent, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        self.killed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def received(self) -> Counter[str]:
        """Deliveries per message id, from the worker's ``event=received`` lines."""
        return Counter(m.group(1) for m in _RECEIVED.finditer(self.output()))

    def rss_peak_mb(self) -> float:
        """The process's peak resident set (VmHWM), read while it still runs."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self) -> None:
        self.killed = True
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit within {timeout}s; output:\n{self.output()[-3000:]}") from None

    def stop(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait(10)


def received_total(workers: list[WorkerProc]) -> Counter[str]:
    total: Counter[str] = Counter()
    for worker in workers:
        total.update(worker.received())
    return total


# -- what tasks wrote themselves ----------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    token: str
    pid: int
    at: float


def starts(path: Path) -> dict[str, list[Start]]:
    """Every task start the journal holds, per token, in order."""
    out: dict[str, list[Start]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        event, token, pid, at = line.split()
        if event == "start":
            out.setdefault(token, []).append(Start(token, int(pid), float(at)))
    return out


# -- raw access to a queue ----------------------------------------------------------------------


class RawQueue(Protocol):
    """A backend's queue as a foreign producer (or operator) reaches it, without cloudq."""

    def send(self, body: bytes, attributes: Mapping[str, str]) -> str:
        """Put one message on the queue as is; return the id the backend gave it."""

    def steal(self) -> str:
        """Take one message off the queue behind the workers' backs; return its id."""


class SQLiteQueue:
    """Rows written straight into the SQLite broker's table (attributes as raw column text)."""

    def __init__(self, path: str, queue: str) -> None:
        self.path, self.queue = path, queue

    def send(self, body: bytes, attributes: Mapping[str, str]) -> str:
        return self.send_column(body, json.dumps(dict(attributes)) if attributes else None)

    def send_column(self, body: bytes, attributes_column: str | None) -> str:
        with sqlite3.connect(self.path) as conn:
            now = time.time()
            cursor = conn.execute(
                "INSERT INTO cloudq_messages (queue, visible_at, sent_at, body, attributes) VALUES (?, ?, ?, ?, ?)",
                (self.queue, now, now, body, attributes_column),
            )
            return str(cursor.lastrowid)

    def steal(self) -> str:
        with sqlite3.connect(self.path) as conn:
            [(row,)] = conn.execute("SELECT min(id) FROM cloudq_messages WHERE queue = ?", (self.queue,)).fetchall()
            conn.execute("DELETE FROM cloudq_messages WHERE id = ?", (row,))
            return str(row)


class SQSQueue:
    """boto3 calls on the queue's URL, as any other SQS client would make them."""

    def __init__(self, url: str) -> None:
        import boto3

        self.url = url
        self.client = boto3.client("sqs")

    def send(self, body: bytes, attributes: Mapping[str, str]) -> str:
        fields: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body.decode("utf-8")}
        if attributes:
            fields["MessageAttributes"] = {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}
        return str(self.client.send_message(**fields)["MessageId"])

    def steal(self) -> str:
        for _ in range(10):
            got = self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
            for m in got.get("Messages", []):
                self.client.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                return str(m["MessageId"])
        raise AssertionError("nothing to steal from the SQS queue")


class PubSubQueue:
    """Publishing and pulling with Google's own clients on the queue's topic and subscription."""

    def __init__(self, topic: str, subscription: str) -> None:
        from google.cloud import pubsub_v1

        self.topic, self.subscription = topic, subscription
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def send(self, body: bytes, attributes: Mapping[str, str]) -> str:
        return str(self.publisher.publish(self.topic, body, **dict(attributes)).result(timeout=30))

    def steal(self) -> str:
        for _ in range(10):
            got = self.subscriber.pull(subscription=self.subscription, max_messages=1, timeout=10)
            for item in got.received_messages:
                self.subscriber.acknowledge(subscription=self.subscription, ack_ids=[item.ack_id])
                return str(item.message.message_id)
        raise AssertionError("nothing to steal from the Pub/Sub subscription")


# -- the ledger ---------------------------------------------------------------------------------


@dataclass
class Sent:
    message_id: str
    label: str
    task_id: str | None = None  # a canary: must end SUCCESS
    reasons: tuple[str, ...] = ()  # a bad message: its dead-letter reason starts with one of these


@dataclass
class Settled:
    done: list[Sent] = field(default_factory=list)
    dead: dict[str, str] = field(default_factory=dict)  # label -> reason
    lost: list[Sent] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # problems worth a line each

    def summary(self) -> str:
        return (
            f"done={len(self.done)} dead_lettered={len(self.dead)} lost={len(self.lost)} "
            f"lost_labels={[s.label for s in self.lost]} wrong={self.wrong}"
        )


class Ledger:
    """Every message sent, and where it ended: count in == canaries done + dead letters (+ lost)."""

    def __init__(self, target: Target, journal: Path) -> None:
        self.target = target
        self.journal = journal
        self.sent: list[Sent] = []

    def canary(self, label: str = "canary") -> Sent:
        task_id = f"canary-{uuid.uuid4().hex[:12]}"
        body = Envelope(id=task_id, task="fault_app.canary", args=[str(self.journal), task_id]).encode()
        sent = Sent(self.target.raw.send(body, {}), label, task_id=task_id)
        self.sent.append(sent)
        return sent

    def bad(self, label: str, body: bytes, attributes: Mapping[str, str], reasons: tuple[str, ...]) -> Sent:
        return self.add_bad(Sent(self.target.raw.send(body, attributes), label, reasons=reasons))

    def add_bad(self, sent: Sent) -> Sent:
        self.sent.append(sent)
        return sent

    def settle(self) -> Settled:
        app = self.target.app
        letters = {d.message_id: d.reason for d in app.broker.dead_letters(self.target.queue, limit=1000)}
        out = Settled()
        for sent in self.sent:
            reason = letters.get(sent.message_id)
            if sent.task_id is not None:
                record = app.results.get(sent.task_id)
                if record is not None and record.state == states.SUCCESS:
                    out.done.append(sent)
                elif reason is not None:
                    out.wrong.append(f"canary {sent.label} dead-lettered: {reason[:200]}")
                    out.dead[sent.label] = reason
                else:
                    out.lost.append(sent)
            elif reason is not None:
                out.dead[sent.label] = reason
                if not reason.strip():
                    out.wrong.append(f"{sent.label}: dead-lettered without a reason")
                elif sent.reasons and not reason.startswith(sent.reasons):
                    out.wrong.append(f"{sent.label}: reason {reason[:200]!r}, expected one of {sent.reasons}")
            else:
                out.lost.append(sent)
        return out

    def complete(self) -> bool:
        try:
            return not self.settle().lost
        except Exception:  # a backend call failing mid-wait: try again until the deadline
            return False


@dataclass
class Target:
    """One backend under test: its URLs, its raw queue, the shortest lease it takes, and an App
    (fault_app, bound to this backend) for sending and inspecting from the test process."""

    name: str
    module: ModuleType
    raw: RawQueue
    lease_s: float
    env: dict[str, str] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.module.app

    @property
    def queue(self) -> str:
        return str(self.app.queues()[0])
