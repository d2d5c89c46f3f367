"""The embedded broker: durable queues in one SQLite file, shared by any number of processes.

Same lease semantics as SQS and the memory broker. Every message is one row of
``cloudq_messages``; its state is in two columns:

* ``visible_at <= now``                   ready (includes leases that ran out)
* ``visible_at > now`` and ``leased``     in flight until ``visible_at``
* ``visible_at > now`` and not ``leased`` delayed (sent with a delay, or nacked with one)

A receive leases a batch in one ``UPDATE ... RETURNING`` statement (one statement is one
transaction, holding the write lock from start to end, so two processes never lease the same
row), bumping ``lease_id``. The receipt is ``(id, lease_id)``: an ack, nack, release or extend
from a lease that has since been handed to another consumer changes nothing. A batch of acks
(or nacks, releases, extends) is one statement too, its receipts passed as one JSON array. Ids
come from AUTOINCREMENT and are never reused. Long polls poll with a short backoff (processes
share no notifications). Times are epoch seconds from ``time.time()``, since other processes
read them: a wall clock stepped back lengthens leases and delays by as much.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable
from ..interfaces import BrokerLimits, DeadLetter, Delivery, OutgoingMessage, QueueStats
from .common import MAX_LEASE_S, check_sizes, max_deliveries_reason
from .sqlite_db import DEFAULT_TIMEOUT_S, SQLiteDatabase, database_options, sqlite_options, sqlite_path
from .sqlite_results import SQLiteResultStore

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SQLiteBroker", "SQLiteResultStore"]

SQLITE_MAX_BODY = 10 * 1024 * 1024
SQLITE_MAX_BATCH = 1000  # keeps a receive's RETURNING and an ack's transaction short
SQLITE_MAX_WAIT_S = 20.0
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.025

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cloudq_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        visible_at REAL NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0,
        lease_id INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        sent_at REAL NOT NULL,
        body BLOB NOT NULL,
        attributes TEXT,
        ordering_key TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS cloudq_messages_due ON cloudq_messages (queue, visible_at)",
    """CREATE TABLE IF NOT EXISTS cloudq_dead_letters (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        body BLOB NOT NULL,
        reason TEXT NOT NULL,
        attributes TEXT,
        deliveries INTEGER NOT NULL,
        dead_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS cloudq_dead_letters_queue ON cloudq_dead_letters (queue, id)",
)

_LEASE = """
    UPDATE cloudq_messages
    SET visible_at = :until, leased = 1, lease_id = lease_id + 1, deliveries = deliveries + 1
    WHERE id IN (
        SELECT id FROM cloudq_messages WHERE queue = :queue AND visible_at <= :now ORDER BY visible_at LIMIT :n
    )
    RETURNING id, lease_id, deliveries, body, attributes, ordering_key
"""
# the receipts (a JSON array of [id, lease_id]) still name the current leases
_HELD = """
    leased = 1 AND (id, lease_id) IN (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:receipts)
    )
"""
_BURY = f"""
    INSERT INTO cloudq_dead_letters (queue, message_id, body, reason, attributes, deliveries, dead_at)
    SELECT queue, CAST(id AS TEXT), body, :reason, attributes, deliveries, :now FROM cloudq_messages WHERE {_HELD}
"""
_DEAD_SELECTED = """
    SELECT id, message_id, body, attributes FROM cloudq_dead_letters
    WHERE queue = :queue AND (:all OR message_id IN (SELECT value FROM json_each(:ids)))
    ORDER BY id LIMIT :n
"""
REDRIVE_BATCH = 500  # dead letters moved per transaction
_SEND = "INSERT INTO cloudq_messages (queue, visible_at, sent_at, body, attributes, ordering_key)"
_SEND_ROW = "(?, ?, ?, ?, ?, ?)"
_SEND_ONE = f"{_SEND} VALUES {_SEND_ROW}"
SEND_CHUNK = 1000  # rows per INSERT: 6 parameters each, well under SQLite's 32766
_STATS = """
    SELECT coalesce(sum(visible_at <= :now), 0),
           coalesce(sum(visible_at > :now AND leased), 0),
           coalesce(sum(visible_at > :now AND NOT leased), 0),
           (SELECT count(*) FROM cloudq_dead_letters WHERE queue = :queue)
    FROM cloudq_messages WHERE queue = :queue
"""


def _receipts(deliveries: Sequence[Delivery]) -> str:
    """The deliveries' receipts as the JSON array ``_HELD`` reads in one statement."""
    parts = []
    for d in deliveries:
        receipt = d.receipt
        if not (isinstance(receipt, tuple) and len(receipt) == 2):
            raise ValueError(f"delivery {d.message_id or receipt!r} was not received from a SQLite broker")
        parts.append(f"[{int(receipt[0])},{int(receipt[1])}]")
    return f"[{','.join(parts)}]"


def _attributes_json(msg: OutgoingMessage) -> str | None:
    """The attributes column: every ``.delay()`` of a task sends the same ``{"task": name}``, so
    its JSON is encoded once per distinct set (str to str, hence hashable) and reused."""
    attributes = msg.attributes
    if not attributes:
        return None
    try:
        return _attributes_text(tuple(attributes.items()))
    except TypeError:  # a value that is not hashable (not a str): encoded each time, as json.dumps says
        return json.dumps(dict(attributes))


@lru_cache(maxsize=1024)
def _attributes_text(items: tuple[tuple[str, Any], ...]) -> str:
    return json.dumps(dict(items))


def _attributes(column: str | None) -> tuple[dict[str, str], str | None]:
    """A row's attributes, or why they cannot be read: that one message is then malformed (any
    process writing to the file can put anything there) instead of the receive failing."""
    if not column:
        return {}, None
    try:
        data = json.loads(column)
    except (ValueError, TypeError, RecursionError):
        return {}, f"attributes column is not JSON: {str(column)[:80]!r}"
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return {}, f"attributes column is not a JSON object of strings: {str(column)[:80]!r}"
    return data, None


class SQLiteBroker:
    """Durable broker in a SQLite file; see the module docstring for the schema and locking."""

    messaging_system = "sqlite"  # OpenTelemetry's messaging.system (cloudq.interfaces.MessagingSystem)

    def __init__(
        self,
        path: str,
        *,
        max_deliveries: int = 0,
        max_body_bytes: int = SQLITE_MAX_BODY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        synchronous: str = "normal",
    ) -> None:
        self.limits = BrokerLimits(
            max_body_bytes=max_body_bytes,
            max_delay_s=None,
            max_batch=SQLITE_MAX_BATCH,
            max_lease_s=MAX_LEASE_S,
            max_wait_s=SQLITE_MAX_WAIT_S,
        )
        self.max_deliveries = max_deliveries
        self.db = SQLiteDatabase(path, _SCHEMA, timeout_s=timeout_s, synchronous=synchronous, error=BackendUnavailable)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SQLiteBroker:
        opts = sqlite_options(url, settings.broker_options, "broker_options")
        return cls(
            sqlite_path(url),
            max_deliveries=opts["max_deliveries"],
            max_body_bytes=opts.get("max_body_bytes", SQLITE_MAX_BODY),
            **database_options(opts),
        )

    def __repr__(self) -> str:
        return f"<SQLiteBroker {self.db.path}>"

    # -- sending ---------------------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        if not messages:
            return []
        check_sizes(messages, self.limits.max_body_bytes)
        now = time.time()
        if len(messages) == 1:  # each ``.delay()``: a prepared statement, no SQL built per call
            msg = messages[0]
            row = (queue, now + max(0.0, msg.delay_s), now, msg.body, _attributes_json(msg), msg.ordering_key)
            return [str(self.db.insert(_SEND_ONE, row))]
        rows = [
            (
                queue,
                now + max(0.0, msg.delay_s),
                now,
                msg.body,
                _attributes_json(msg),
                msg.ordering_key,
            )
            for msg in messages
        ]
        if len(rows) <= SEND_CHUNK:  # one statement: atomic without an explicit transaction
            return self._insert(rows, self.db.insert)
        with self.db.write() as conn:  # several statements, one transaction: all or nothing
            return self._insert(rows, lambda sql, params: conn.execute(sql, params).lastrowid or 0)

    @staticmethod
    def _insert(rows: list[tuple[Any, ...]], run: Callable[[str, list[Any]], int]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(rows), SEND_CHUNK):
            chunk = rows[start : start + SEND_CHUNK]
            last = run(f"{_SEND} VALUES {', '.join([_SEND_ROW] * len(chunk))}", [v for row in chunk for v in row])
            # one statement under the write lock: AUTOINCREMENT gave its rows consecutive ids
            ids.extend(str(i) for i in range(last - len(chunk) + 1, last + 1))
        return ids

    # -- receiving -------------------------------------------------------------------------

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        n = max(1, min(max_messages, self.limits.max_batch))
        lease_s = max(0.0, min(lease_s, self.limits.max_lease_s))
        deadline = time.monotonic() + max(0.0, min(wait_s, self.limits.max_wait_s))
        pause = _FIRST_POLL_S
        while True:
            # a read first: even an UPDATE that leases nothing takes the write lock, which the
            # producers' sends then wait for; a poll of an empty queue stays a read
            due_in = self._due_in(queue)
            if due_in is not None and due_in <= 0:
                got = self._lease(queue, n, lease_s)
                if got:
                    return got
                continue  # another consumer took them, or all were dead-lettered: look again
            remaining = deadline - time.monotonic()  # long poll: cheap reads until something is due
            if remaining <= 0:
                return []
            time.sleep(min(pause, remaining, _MAX_POLL_S if due_in is None else max(due_in, 0.0005)))
            pause = min(pause * 2, _MAX_POLL_S)

    def _due_in(self, queue: str) -> float | None:
        """Seconds until the next message of ``queue`` is due (<= 0: now); None when it is empty."""
        [(due,)] = self.db.query("SELECT min(visible_at) FROM cloudq_messages WHERE queue = ?", (queue,))
        return None if due is None else float(due) - time.time()

    def _lease(self, queue: str, n: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``n`` due messages; those past ``max_deliveries`` go to the dead letters."""
        now = time.time()
        rows = self.db.query(_LEASE, {"until": now + lease_s, "queue": queue, "now": now, "n": n})
        limit = self.max_deliveries
        out = []
        spent = []
        for id_, lease, count, body, attrs, key in sorted(rows):
            if limit and count > limit:
                spent.append(Delivery(body, (id_, lease), count, queue))
            else:
                attributes, malformed = _attributes(attrs)
                out.append(Delivery(body, (id_, lease), count, queue, str(id_), attributes, key, malformed))
        if spent:
            self.dead_letter(spent, max_deliveries_reason(limit))
        return out

    # -- settling --------------------------------------------------------------------------

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self.db.change(f"DELETE FROM cloudq_messages WHERE {_HELD}", {"receipts": _receipts(deliveries)})

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        if deliveries:
            self.db.change(
                f"UPDATE cloudq_messages SET visible_at = :at, leased = 0 WHERE {_HELD}",
                {"at": time.time() + max(0.0, delay_s), "receipts": _receipts(deliveries)},
            )

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Unstarted: back at the front of the queue (its send time), the delivery not counted."""
        if deliveries:
            self.db.change(
                "UPDATE cloudq_messages SET visible_at = sent_at, leased = 0, deliveries = deliveries - 1"
                f" WHERE {_HELD}",
                {"receipts": _receipts(deliveries)},
            )

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        if deliveries:
            until = time.time() + max(0.0, min(lease_s, self.limits.max_lease_s))
            self.db.change(
                f"UPDATE cloudq_messages SET visible_at = :at WHERE {_HELD}",
                {"at": until, "receipts": _receipts(deliveries)},
            )

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        if deliveries:
            params = {"receipts": _receipts(deliveries), "reason": reason, "now": time.time()}
            with self.db.write() as conn:
                conn.execute(_BURY, params)
                conn.execute(f"DELETE FROM cloudq_messages WHERE {_HELD}", params)

    # -- operations ------------------------------------------------------------------------

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        rows = self.db.query(
            "SELECT body, reason, message_id, dead_at FROM cloudq_dead_letters WHERE queue = ? ORDER BY id LIMIT ?",
            (queue, limit),
        )
        return [DeadLetter(body, reason, queue, message_id, dead_at) for body, reason, message_id, dead_at in rows]

    def redrive(
        self,
        queue: str,
        ids: Collection[str] | None = None,
        *,
        rewrite: Callable[[bytes], bytes] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Each batch is one transaction that inserts the messages (under their old ids, with no
        deliveries) and deletes their dead letters: a crash leaves each on one side, never both."""
        params = {"queue": queue, "all": ids is None, "ids": json.dumps(sorted(ids or ())), "n": REDRIVE_BATCH}
        moved = 0
        while True:
            with self.db.write() as conn:
                rows = conn.execute(_DEAD_SELECTED, params).fetchall()
                if not rows:
                    break
                now = time.time()
                conn.executemany(
                    "INSERT INTO cloudq_messages (id, queue, visible_at, sent_at, body, attributes) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (int(mid), queue, now, now, rewrite(body) if rewrite else body, attrs)
                        for _, mid, body, attrs in rows
                    ],
                )
                conn.executemany("DELETE FROM cloudq_dead_letters WHERE id = ?", [(row[0],) for row in rows])
            moved += len(rows)
            if progress is not None:
                progress(len(rows))
        return moved

    def delete_dead_letters(self, queue: str, ids: Collection[str]) -> int:
        return self.db.change(
            "DELETE FROM cloudq_dead_letters WHERE queue = ? AND message_id IN (SELECT value FROM json_each(?))",
            (queue, json.dumps(sorted(ids))),
        )

    def stats(self, queue: str) -> QueueStats:
        now = time.time()
        [(ready, in_flight, delayed, dead)] = self.db.query(_STATS, {"now": now, "queue": queue})
        return QueueStats(queue, ready, in_flight, delayed, dead)

    def purge(self, queue: str) -> int:
        """Drop every message of ``queue`` that is not dead-lettered, in flight ones included."""
        return self.db.change("DELETE FROM cloudq_messages WHERE queue = ?", (queue,))

    def close(self) -> None:
        self.db.close()
