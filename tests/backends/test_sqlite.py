"""SQLite-only behaviour: several processes, crashes, durability, fork, URLs and options."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudq import states
from cloudq.backends import sqlite_db
from cloudq.backends.memory import MemoryBroker
from cloudq.backends.sqlite import SQLiteBroker, SQLiteResultStore
from cloudq.config import Settings
from cloudq.errors import BackendUnavailable, ConfigurationError, ResultStoreError
from cloudq.interfaces import OutgoingMessage, ResultRecord
from cloudq.testing import assert_nothing_arrives, receive_until

pytestmark = pytest.mark.timeout(60)
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cloudq.db")


@pytest.fixture
def broker(db: str) -> Iterator[SQLiteBroker]:
    broker = SQLiteBroker(db)
    yield broker
    broker.close()


def start(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python child process running ``script`` (which imports cloudq) with ``args``."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def messages(prefix: str, n: int) -> list[OutgoingMessage]:
    return [OutgoingMessage(f"{prefix}-{i}".encode()) for i in range(n)]


# -- several processes ---------------------------------------------------------------------

CONSUMER = """
    import json, os, sys, time
    from cloudq.backends.sqlite import SQLiteBroker

    path, go, sent_all = sys.argv[1:]
    broker = SQLiteBroker(path)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    seen = []
    while True:
        got = broker.receive("work", 10, 60, wait_s=0.2)
        seen.extend(d.message_id for d in got)
        broker.ack(got)
        if not got and os.path.exists(sent_all):
            break
    print(json.dumps(seen), flush=True)
"""


def test_two_consumer_processes_never_share_a_message_and_get_all(broker: SQLiteBroker, tmp_path: Path) -> None:
    go, sent_all = tmp_path / "go", tmp_path / "sent-all"
    ids = broker.send("work", messages("early", 2000))
    consumers = [start(CONSUMER, broker.db.path, str(go), str(sent_all)) for _ in range(2)]
    try:
        for proc in consumers:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        for batch in range(50):  # enqueue while they work
            ids += broker.send("work", messages(f"late{batch}", 20))
        sent_all.touch()
        outputs = [proc.communicate(timeout=45) for proc in consumers]
    finally:
        for proc in consumers:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(consumers, outputs, strict=True):
        assert proc.returncode == 0, err
    seen = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    everything = seen[0] + seen[1]
    assert len(everything) == len(set(everything)), "a message was leased to both processes"
    assert set(everything) == set(ids)
    assert all(seen), "one consumer got nothing: the test did not exercise concurrency"


LEASE_AND_HANG = """
    import json, sys, time
    from cloudq.backends.sqlite import SQLiteBroker

    broker = SQLiteBroker(sys.argv[1])
    got = broker.receive("work", 10, float(sys.argv[2]))
    print(json.dumps([d.message_id for d in got]), flush=True)
    time.sleep(60)
"""


def test_a_killed_process_loses_no_leased_message(broker: SQLiteBroker) -> None:
    lease_s = 1.0
    ids = broker.send("work", messages("job", 5))
    child = start(LEASE_AND_HANG, broker.db.path, str(lease_s))
    try:
        assert child.stdout is not None
        leased = json.loads(child.stdout.readline())
        assert sorted(leased) == sorted(ids)
    finally:
        child.kill()  # SIGKILL: no cleanup, no release
        child.wait()
    killed_at = time.monotonic()
    early = broker.receive("work", 10, 30)
    assert not early or time.monotonic() - killed_at >= lease_s
    back = early + receive_until(broker, "work", 5 - len(early), lease_s=30, timeout=15)
    assert sorted(d.message_id for d in back) == sorted(ids)
    assert {d.delivery_count for d in back} == {2}
    broker.ack(back)


SEND_FOREVER = """
    import json, sys
    from cloudq.backends.sqlite import SQLiteBroker
    from cloudq.interfaces import OutgoingMessage

    broker = SQLiteBroker(sys.argv[1])
    batch = 0
    while True:
        ids = broker.send("work", [OutgoingMessage(b"%d-%d" % (batch, i)) for i in range(20)])
        print(json.dumps(ids), flush=True)
        batch += 1
"""


def test_a_producer_killed_mid_send_leaves_every_confirmed_message_and_a_sound_file(broker: SQLiteBroker) -> None:
    child = start(SEND_FOREVER, broker.db.path)
    confirmed: list[str] = []
    try:
        assert child.stdout is not None
        for _ in range(100):
            confirmed += json.loads(child.stdout.readline())
    finally:
        child.kill()
        out, _ = child.communicate()
    for line in out.splitlines():  # whatever it confirmed before dying
        try:
            confirmed += json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            pass
    stored = broker.stats("work").ready
    assert stored >= len(confirmed) and stored % 20 == 0, "a batch was half written"
    got = receive_until(broker, "work", stored, lease_s=60, timeout=15)
    assert set(confirmed) <= {d.message_id for d in got}
    with sqlite3.connect(broker.db.path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@needs_fork
def test_a_forked_child_uses_the_broker_and_the_parent_closing_loses_none_of_its_writes(db: str) -> None:
    broker = SQLiteBroker(db)
    broker.send("work", [OutgoingMessage(b"parent")])
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must leave through os._exit, never back into pytest
        code = 1
        try:
            broker.send("work", [OutgoingMessage(b"child before")])
            os.write(to_parent_w, b"1")
            os.read(to_child_r, 1)  # wait until the parent has closed its connections
            broker.send("work", [OutgoingMessage(b"child after")])
            code = 0
        finally:
            os._exit(code)
    os.read(to_parent_r, 1)
    broker.close()  # the parent's last connection: must not checkpoint away the child's WAL
    os.write(to_child_w, b"1")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reopened = SQLiteBroker(db)
    got = receive_until(reopened, "work", 3, lease_s=60, timeout=10)
    assert sorted(d.body for d in got) == [b"child after", b"child before", b"parent"]
    reopened.close()
    for fd in (to_parent_r, to_parent_w, to_child_r, to_child_w):
        os.close(fd)


# -- durability ------------------------------------------------------------------------------


def test_messages_leases_and_results_survive_closing_and_reopening(db: str) -> None:
    broker, store = SQLiteBroker(db), SQLiteResultStore(db)
    broker.send("work", [OutgoingMessage(b"leased"), OutgoingMessage(b"ready")])
    broker.send("work", [OutgoingMessage(b"delayed", delay_s=60)])
    [leased] = broker.receive("work", 1, 60)
    broker.send("other", [OutgoingMessage(b"bad")])
    broker.dead_letter(broker.receive("other", 1, 60), "why")
    store.set(ResultRecord("t1", states.SUCCESS, "app.add", result={"sum": 3}))
    broker.close()
    store.close()

    broker, store = SQLiteBroker(db), SQLiteResultStore(db)
    stats = broker.stats("work")
    assert (stats.ready, stats.in_flight, stats.delayed) == (1, 1, 1)
    assert [d.reason for d in broker.dead_letters("other")] == ["why"]
    assert [d.body for d in broker.receive("work", 10, 60)] == [b"ready"]
    broker.ack([leased])  # a receipt from before the restart still works
    assert broker.stats("work").in_flight == 1
    record = store.get("t1")
    assert record is not None and record.result == {"sum": 3}
    broker.close()
    store.close()


def test_the_file_is_in_wal_mode(broker: SQLiteBroker) -> None:
    with sqlite3.connect(broker.db.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_broker_and_result_store_share_one_file(db: str) -> None:
    url = f"sqlite:///{db}"
    broker = SQLiteBroker.from_url(url, Settings())
    store = SQLiteResultStore.from_url(url, Settings())
    broker.send("work", [OutgoingMessage(b"x")])
    store.set(ResultRecord("t1", states.PENDING))
    assert broker.stats("work").ready == 1
    assert store.get("t1") is not None
    with sqlite3.connect(db) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"cloudq_messages", "cloudq_dead_letters", "cloudq_results"} <= tables


def test_set_many_over_several_statements_is_in_order_all_or_none_and_keeps_terminal_records(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudq.backends import sqlite_results

    monkeypatch.setattr(sqlite_results, "UPSERT_CHUNK", 3)  # 8 records: three statements
    store = SQLiteResultStore(db)
    store.set(ResultRecord("done", states.SUCCESS, result="first"))
    store.set(ResultRecord("stale", states.SUCCESS, result="old", expires_at=time.time() - 1))
    records = [ResultRecord(f"t{i}", states.STARTED) for i in range(4)]
    records += [ResultRecord("t1", states.SUCCESS, result=1), ResultRecord("t1", states.STARTED)]
    records += [ResultRecord("done", states.FAILURE), ResultRecord("stale", states.SUCCESS, result="new")]
    store.set_many(records)
    assert store.get("t1").state == states.SUCCESS  # the later write in the batch found it finished
    assert store.get("t3").state == states.STARTED
    assert store.get("done").result == "first" and store.get("stale").result == "new"

    bad = [ResultRecord(f"u{i}", states.SUCCESS) for i in range(6)] + [ResultRecord("u9", states.SUCCESS, result={1})]
    with pytest.raises(Exception, match="not JSON-serialisable"):
        store.set_many(bad)
    assert store.get_many([f"u{i}" for i in range(10)]) == {}  # nothing of a failed batch is written


def test_expired_results_are_swept_from_the_file(db: str) -> None:
    store = SQLiteResultStore(db)
    store.set(ResultRecord("old", states.SUCCESS, expires_at=time.time() - 1))
    store.set(ResultRecord("new", states.SUCCESS, expires_at=time.time() + 3600))
    store.set(ResultRecord("kept", states.SUCCESS))
    assert store.sweep() == 1
    with sqlite3.connect(db) as raw:
        left = sorted(row[0] for row in raw.execute("SELECT task_id FROM cloudq_results"))
    assert left == ["kept", "new"]


# -- URLs, options and bad input -------------------------------------------------------------


def test_a_relative_url_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    SQLiteBroker.from_url("sqlite:///sub.db", Settings()).close()
    assert (tmp_path / "sub.db").is_file()


def test_an_absolute_url_path_has_four_slashes(tmp_path: Path) -> None:
    SQLiteResultStore.from_url(f"sqlite:///{tmp_path}/abs.db", Settings()).close()
    assert (tmp_path / "abs.db").is_file()


def test_the_result_store_accepts_the_broker_url_it_shares_by_default(db: str) -> None:
    url = f"sqlite:///{db}?max_deliveries=3&max_body_bytes=1000&timeout=5&synchronous=full"
    SQLiteBroker.from_url(url, Settings()).close()
    SQLiteResultStore.from_url(url, Settings()).close()


def test_url_options_override_settings_options(db: str) -> None:
    settings = Settings(broker_options={"max_deliveries": 5, "max_body_bytes": 1000})
    broker = SQLiteBroker.from_url(f"sqlite:///{db}?max_deliveries=2", settings)
    assert (broker.max_deliveries, broker.limits.max_body_bytes) == (2, 1000)
    broker.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "needs a file path"),
        ("sqlite://host/x.db", "needs a file path"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite:///{db}?prefix=app-", "unknown option 'prefix' in the URL"),
        ("sqlite:///{db}?max_deliveries=lots", "'max_deliveries' must be a number"),
        ("sqlite:///{db}?synchronous=off", "'synchronous' must be one of normal, full"),
    ],
)
def test_bad_urls_are_clear_configuration_errors(db: str, url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SQLiteBroker.from_url(url.format(db=db), Settings())


def test_an_unreachable_path_is_backend_unavailable_naming_it() -> None:
    with pytest.raises(BackendUnavailable, match="/nonexistent-dir/x/q.db"):
        SQLiteBroker.from_url("sqlite:////nonexistent-dir/x/q.db", Settings())


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(BackendUnavailable, match="not a database"):
        SQLiteBroker(str(path))
    with pytest.raises(ResultStoreError, match="not a database"):
        SQLiteResultStore(str(path))
    assert path.read_text().startswith("these are my notes")


def test_polling_an_empty_queue_never_waits_for_the_write_lock(db: str) -> None:
    """A worker with nothing to do reads: it neither waits for nor takes the lock producers need."""
    broker = SQLiteBroker(db, timeout_s=0.2)
    broker.send("busy", [OutgoingMessage(b"elsewhere")])
    with sqlite3.connect(db, isolation_level=None) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        try:
            assert broker.receive("idle", 10, 30.0) == []
            assert broker.receive("idle", 10, 30.0, wait_s=0.05) == []
        finally:
            writer.execute("ROLLBACK")
    assert [d.body for d in broker.receive("busy", 10, 30.0)] == [b"elsewhere"]
    broker.close()


def test_a_delivery_from_another_broker_is_refused(broker: SQLiteBroker) -> None:
    memory = MemoryBroker()
    memory.send("work", [OutgoingMessage(b"x")])
    foreign = memory.receive("work", 1, 60)
    with pytest.raises(ValueError, match="not received from a SQLite broker"):
        broker.ack(foreign)


def test_a_body_that_is_not_bytes_is_refused_and_nothing_is_sent(broker: SQLiteBroker) -> None:
    with pytest.raises(TypeError, match="bytes, got str"):
        broker.send("work", [OutgoingMessage(b"fine"), OutgoingMessage("text")])  # type: ignore[arg-type]
    assert_nothing_arrives(broker, "work", 0.2)


# -- threads, close and fork -----------------------------------------------------------------


def test_close_while_another_thread_long_polls_is_safe(broker: SQLiteBroker) -> None:
    results: list[object] = []

    def poll() -> None:
        try:
            results.append(broker.receive("work", 10, 60, wait_s=1.0))
        except BaseException as exc:  # reported below
            results.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    broker.close()
    broker.send("work", [OutgoingMessage(b"after close")])  # a closed broker reopens on use
    poller.join()
    assert len(results) == 1 and not isinstance(results[0], BaseException), results


ACKED_EXIT_BASE = 100  # a forked consumer exits with 100 + how many messages it acked


@needs_fork
def test_forking_while_threads_use_the_broker_loses_nothing(broker: SQLiteBroker) -> None:
    """Like a process pool starting beside a working consumer thread: every fork closes the
    parent's connections under the gate, and the children use the same broker object."""
    stop = threading.Event()
    sent: list[str] = []
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            while not stop.is_set():
                sent.extend(broker.send("work", messages("t", 5)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    children = []
    try:
        for _ in range(3):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    got = broker.receive("work", 10, 60)
                    broker.ack(got)
                    broker.send("work", messages("from-child", 2))
                    code = ACKED_EXIT_BASE + len(got)
                finally:
                    os._exit(code)
            children.append(pid)
    finally:
        stop.set()
        producer.join()
    acked = 0
    for pid in children:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        assert code >= ACKED_EXIT_BASE, f"forked consumer failed with exit code {code}"
        acked += code - ACKED_EXIT_BASE
    assert not errors, errors
    with sqlite3.connect(broker.db.path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = [bytes(row[0]) for row in raw.execute("SELECT body FROM cloudq_messages")]
    from_children = [body for body in rows if body.startswith(b"from-child")]
    assert len(from_children) == 6
    assert len(rows) - len(from_children) == len(sent) - acked


def test_the_wal_stays_bounded_while_readers_never_stop(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant readers keep SQLite's own checkpoints from starting the WAL over; the broker
    truncates it once it passes the soft limit (without that it grew to ~30x here)."""
    limit = 256 * 1024
    monkeypatch.setattr(sqlite_db, "WAL_SOFT_LIMIT", limit)
    monkeypatch.setattr(sqlite_db, "WAL_CHECK_EVERY_S", 0.0)
    broker = SQLiteBroker(db)
    stop = threading.Event()

    def read() -> None:
        raw = sqlite3.connect(db, isolation_level=None)
        while not stop.is_set():
            raw.execute("SELECT count(*) FROM cloudq_messages").fetchall()
        raw.close()

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    biggest = 0
    try:
        for _ in range(3000):
            broker.send("work", [OutgoingMessage(b"x" * 200)])
            biggest = max(biggest, os.path.getsize(db + "-wal"))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert biggest < 4 * limit, f"the WAL grew to {biggest} bytes"
    assert broker.stats("work").ready == 3000
    broker.close()


@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("{not json", "attributes column is not JSON"),
        ("[1, 2]", "not a JSON object of strings"),
        ('{"task": 5}', "not a JSON object of strings"),
        ("[" * 100_000, "attributes column is not JSON"),
    ],
)
def test_an_unreadable_attributes_column_makes_that_message_malformed_not_the_receive_fail(
    broker: SQLiteBroker, db: str, column: str, why: str
) -> None:
    broker.send("q", [OutgoingMessage(b"before", attributes={"task": "a"})])
    [forged] = broker.send("q", [OutgoingMessage(b"forged")])
    broker.send("q", [OutgoingMessage(b"after")])
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:  # another process writing the file
        conn.execute("UPDATE cloudq_messages SET attributes = ? WHERE id = ?", (column, int(forged)))
    got = broker.receive("q", 10, 30)
    assert [d.body for d in got] == [b"before", b"forged", b"after"]
    assert got[0].attributes == {"task": "a"} and got[0].malformed is None and got[2].malformed is None
    assert got[1].malformed is not None and why in got[1].malformed and got[1].attributes == {}


INCREMENTER = """
    import json, sys
    from cloudq.backends.sqlite import SQLiteResultStore

    store = SQLiteResultStore(sys.argv[1])
    print(json.dumps([store.increment("chord") for _ in range(int(sys.argv[2]))]), flush=True)
"""


def test_processes_incrementing_one_counter_each_see_their_own_total(db: str) -> None:
    procs = [start(INCREMENTER, db, "200") for _ in range(3)]
    outputs = [proc.communicate(timeout=45) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    values = sorted(v for out, _ in outputs for v in json.loads(out))
    assert values == list(range(1, 601))


def test_counters_have_their_own_table_and_are_swept(db: str) -> None:
    store = SQLiteResultStore(db)
    store.increment("gone", expires_at=time.time() - 1)
    store.increment("kept", expires_at=time.time() + 3600)
    store.set(ResultRecord("gone", states.SUCCESS, "t", result=1))  # a task with the same id is its own row
    assert store.sweep() == 1
    rows = sqlite3.connect(db).execute("SELECT key, value FROM cloudq_counters").fetchall()
    assert rows == [("kept", 1)]
    assert store.get("gone").result == 1  # type: ignore[union-attr]
    store.close()
