"""Poison messages sent raw to each backend's queue, each between valid canaries, through a real
worker process: every bad message is dead-lettered with a reason, every canary succeeds after
one delivery, nothing loops, nothing is silently dropped, and the worker runs a task afterwards.

Issue 10, defects 1-3 (deep nesting, internal errors retried without a cap, forged transport
attributes); the self-check proves the accounting notices a message that vanished.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_harness import Ledger, Sent, SQLiteQueue, Target, WorkerProc, env_int, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudq.envelope import Envelope

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MALFORMED = ("MalformedMessage",)
BAD_INPUT = ("MalformedMessage", "UnsupportedVersion", "UnknownTask", "InvalidArguments")
MAX_BAD_DELIVERIES = 3  # the app's max_retries (1) + 1, plus one for a lease racing the dead letter
SETTLE_S = 40.0  # well past the longest bounded give-back a bad message may get


def envelope_text(task_id: str, **raw: str) -> bytes:
    """A canary envelope with some fields replaced by raw JSON text (1e999, NaN, 10**40 ...)."""
    fields = {"v": "1", "id": json.dumps(task_id), "task": '"fault_app.canary"', "args": '["/dev/null", "x"]', **raw}
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items() if v is not None) + "}").encode()


def valid_body(task_id: str) -> bytes:
    return Envelope(id=task_id, task="fault_app.canary", args=["/dev/null", task_id]).encode()


# label -> (body, reasons); the same on every backend
BODIES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "nested-list-100k": (b"[" * 100_000 + b"]" * 100_000, MALFORMED),
    "nested-object-100k": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, MALFORMED),
    "nested-args-100k": (envelope_text("p-nest", args="[" * 100_000 + "]" * 100_000), MALFORMED),
    "not-utf8": (b'{"v": 1, "id": "\xff\xfe", "task": "\xc3\x28"}', MALFORMED),
    "not-json": (b"{not json", MALFORMED),
    "json-list": (b"[1, 2]", MALFORMED),
    "json-string": (b'"just a string"', MALFORMED),
    "json-null": (b"null", MALFORMED),
    "eta-1e999": (envelope_text("p-eta-inf", eta="1e999"), MALFORMED),
    "eta-nan": (envelope_text("p-eta-nan", eta="NaN"), MALFORMED),
    "expires-minus-inf": (envelope_text("p-exp-inf", expires="-Infinity"), MALFORMED),
    "sent-at-nan": (envelope_text("p-sent-nan", sent_at="NaN"), MALFORMED),
    "retries-10e40": (envelope_text("p-retries", retries=str(10**40)), (*MALFORMED, "InvalidArguments")),
    "retries-negative": (envelope_text("p-retries-neg", retries="-1"), MALFORMED),
    "v-2": (envelope_text("p-v2", v="2"), ("UnsupportedVersion",)),
    "v-string": (envelope_text("p-vstr", v='"1"'), (*MALFORMED, "UnsupportedVersion")),
    "v-missing": (envelope_text("p-vnone", v=None), (*MALFORMED, "UnsupportedVersion")),  # type: ignore[arg-type]
    "unknown-task": (envelope_text("p-unknown", task='"nobody.has.this"'), ("UnknownTask",)),
    "args-object": (envelope_text("p-args", args='{"a": 1}'), (*MALFORMED, "InvalidArguments")),
}

# forged cloudq transport attributes, per backend; the body is a valid task that must NOT run
FORGED: dict[str, dict[str, tuple[bytes | None, dict[str, str]]]] = {
    "sqs": {
        "sqs-encoding-base64-on-plain": (b"not base64!", {"cloudq-encoding": "base64"}),
        "sqs-claim-check-on-plain": (None, {"cloudq-claim-check": "s3"}),
        "sqs-prior-deliveries-abc": (None, {"cloudq-prior-deliveries": "abc"}),
    },
    "pubsub": {
        "pubsub-not-before-inf": (None, {"cloudq-not-before": "inf"}),
        "pubsub-not-before-nan": (None, {"cloudq-not-before": "nan"}),
        "pubsub-claim-without-bucket": (None, {"cloudq-claim": "gs://x/y"}),
        "pubsub-prior-abc": (None, {"cloudq-prior": "abc"}),
    },
    "sqlite": {},  # its attributes column is forged below (the raw column text, not JSON)
}
SQLITE_COLUMNS = {"sqlite-attributes-not-json": "{not json", "sqlite-attributes-json-list": "[1, 2]"}


def sqs_text(body: bytes) -> bytes:
    """What a foreign SQS producer can send for ``body``: SQS carries text, so each byte becomes the
    code point of the same value, and control characters SQS refuses become ``?``."""
    cleaned = bytes(b if b >= 0x20 or b in b"\t\n\r" else ord("?") for b in body)
    return cleaned.decode("latin-1").encode()


def send_table(ledger: Ledger, target: Target, forged_ids: list[str]) -> list[Sent]:
    """Every bad message of the table for this backend, each followed by a canary; the task ids
    of the valid bodies under forged attributes go to ``forged_ids`` (they must never run)."""
    bad: list[Sent] = []
    ledger.canary("canary-first")
    for label, (body, reasons) in BODIES.items():
        attributes: dict[str, str] = {}
        if target.name == "sqs" and label == "not-utf8":  # SQS carries text: binary goes as cloudq sends it
            body, attributes = base64.b64encode(body), {"cloudq-encoding": "base64"}
        bad.append(ledger.bad(label, body, attributes, reasons))
        ledger.canary(f"canary-after-{label}")
    for label, (maybe_body, attributes) in FORGED[target.name].items():
        forged_ids.append(f"forged-{uuid.uuid4().hex[:8]}")
        body = maybe_body or valid_body(forged_ids[-1])
        bad.append(ledger.bad(label, body, attributes, MALFORMED))
        ledger.canary(f"canary-after-{label}")
    if isinstance(target.raw, SQLiteQueue):
        for label, column in SQLITE_COLUMNS.items():
            forged_ids.append(f"forged-{uuid.uuid4().hex[:8]}")
            message_id = target.raw.send_column(valid_body(forged_ids[-1]), column)
            bad.append(ledger.add_bad(Sent(message_id, label, reasons=MALFORMED)))
            ledger.canary(f"canary-after-{label}")
    return bad


def start_worker(workers: Callable[..., WorkerProc], target: Target) -> WorkerProc:
    # a short lease, so a batch that was leased and dropped comes back within the test
    return workers("-c", "2", "--prefetch-multiplier", "4", "--poll-wait", "0.5", lease_s=target.lease_s)


def assert_worker_still_runs_a_task(ledger: Ledger, worker: WorkerProc) -> None:
    after = ledger.canary("canary-at-the-end")
    assert wait_until(lambda: ledger.target.app.results.get(after.task_id) is not None, 30), worker.output()[-3000:]
    assert worker.alive, worker.output()[-3000:]


def test_every_poison_message_is_dead_lettered_and_its_batch_proceeds(target: Target, workers, tmp_path: Path):
    ledger = Ledger(target, tmp_path / "journal.txt")
    forged_ids: list[str] = []
    bad = send_table(ledger, target, forged_ids)
    worker = start_worker(workers, target)
    wait_until(ledger.complete, SETTLE_S, interval=0.5)
    settled = ledger.settle()
    deliveries = worker.received()
    print(f"\n[faults] poison table on {target.name}: sent={len(ledger.sent)} bad={len(bad)} {settled.summary()}")
    canaries = [s for s in ledger.sent if s.task_id is not None]
    looping = {s.label: deliveries[s.message_id] for s in bad if deliveries[s.message_id] > MAX_BAD_DELIVERIES}
    redelivered = {s.label: deliveries[s.message_id] for s in canaries if deliveries[s.message_id] != 1}
    assert not settled.lost, f"lost or still looping: {[s.label for s in settled.lost]}\n{worker.output()[-4000:]}"
    assert not settled.wrong, settled.wrong
    assert len(settled.done) == len(canaries) and len(settled.dead) == len(bad)  # in == done + dead letters
    assert not looping, f"bad messages delivered more than {MAX_BAD_DELIVERIES} times: {looping}"
    assert not redelivered, f"canaries delivered other than once (their batch was poisoned): {redelivered}"
    ran = [i for i in forged_ids if (r := target.app.results.get(i)) is not None and r.state == "SUCCESS"]
    assert not ran, f"messages with forged transport attributes ran: {ran}"
    assert_worker_still_runs_a_task(ledger, worker)


def test_the_ledger_reports_a_message_deleted_behind_the_workers_back(target: Target, workers, tmp_path: Path):
    """Self-check of the accounting: a canary that vanished is reported lost, not passed over."""
    ledger = Ledger(target, tmp_path / "journal.txt")
    for i in range(3):
        ledger.canary(f"canary-{i}")
    stolen = target.raw.steal()
    worker = start_worker(workers, target)
    wait_until(ledger.complete, 15, interval=0.5)  # never completes: one is gone
    settled = ledger.settle()
    print(f"\n[faults] self-check on {target.name}: {settled.summary()}")
    assert [s.message_id for s in settled.lost] == [stolen]
    assert len(settled.done) == 2
    assert worker.alive


# -- property-based bodies ------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ENVELOPE_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 0, 2, "1", None, 1.0, True]),
        "task": st.sampled_from(["fault_app.canary", "nobody.has.this", "", 7]),
        "args": JSON_VALUES,
        "kwargs": JSON_VALUES,
        "eta": st.sampled_from([None, 0, 1.5, float("inf"), float("-inf"), float("nan"), "soon", 10**400]),
        "expires": st.sampled_from([None, float("inf"), float("nan"), -(10**30), "never"]),
        "retries": st.sampled_from([0, -1, 10**40, 1.5, "2", float("nan")]),
        "headers": JSON_VALUES,
        "sig": st.sampled_from([None, "", "00", 5]),
    },
)


def _envelope_bytes(fields: dict[str, object], task_id: str) -> bytes:
    return json.dumps({"id": task_id, **fields}, allow_nan=True).encode()


BODIES_STRATEGY = st.one_of(
    st.binary(min_size=1, max_size=64),
    JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    ENVELOPE_FIELDS.map(lambda fields: ("envelope", fields)),
)


def test_property_based_bodies_are_each_settled_once_between_canaries(target: Target, workers, tmp_path: Path):
    """Each example: canary, body, canary. The body ends as a result (it was a valid task) or a
    dead letter with a reason; both canaries succeed; the worker never stops."""
    journal = tmp_path / "journal.txt"
    worker = start_worker(workers, target)
    examples = env_int("FAULTS_EXAMPLES", {"sqlite": 12, "sqs": 6, "pubsub": 6}[target.name])
    seen: list[str] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(BODIES_STRATEGY)
    def one_body(drawn: object) -> None:
        ledger = Ledger(target, journal)
        task_id = f"prop-{uuid.uuid4().hex[:12]}"
        if isinstance(drawn, tuple):
            body = _envelope_bytes(drawn[1], task_id)
        else:
            body = drawn  # type: ignore[assignment]
        if target.name == "sqs":
            body = sqs_text(body)
        ledger.canary("before")
        sent = ledger.add_bad(Sent(target.raw.send(body, {}), f"body {body[:80]!r}"))
        ledger.canary("after")

        def settled() -> bool:
            record = target.app.results.get(task_id)
            return record is not None and record.terminal and ledger.complete()

        def dead_or_done() -> bool:
            try:
                done = ledger.settle()
            except Exception:
                return False
            return len(done.done) == 2 and (sent.label in done.dead or settled())

        assert wait_until(dead_or_done, 30, interval=0.2), (
            f"{sent.label}: {ledger.settle().summary()}\n{worker.output()[-3000:]}"
        )
        assert worker.alive, worker.output()[-3000:]
        assert worker.received()[sent.message_id] <= MAX_BAD_DELIVERIES
        seen.append(sent.label)

    one_body()
    print(f"\n[faults] property-based bodies on {target.name}: {len(seen)} examples settled")
    assert_worker_still_runs_a_task(Ledger(target, journal), worker)
