"""The revoke check every runtime runs before a batch of deliveries: the worker after each receive,
the Lambda handler on an event's records, the push handler on its one message, eager runs.

One batched read (``ManyReader.get_many``; one ``get`` per id without it) finds the REVOKED records
of the batch's task ids; those deliveries are acked without running (``Executor.revoked``). Only
REVOKED stops a delivery: a SUCCESS or FAILURE record of a redelivered task does not (Celery runs a
redelivered message again; idempotent tasks skip duplicates through their claim). When the read
fails the batch runs unchecked (a warning): an outage of the result store never stops the queue.

The ids come from decoding the bodies, and the envelopes are held (decoded.py) for the executor to
run: each body is parsed once per record. A body that does not decode is still checked by the id
it names (``peek_id``), as a revoked task is acked whatever its message holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .. import states
from ..envelope import peek_id
from ..errors import MalformedMessage
from ..interfaces import Delivery, ResultRecord
from ..results import read_many
from . import decoded

if TYPE_CHECKING:
    from ..app import App
    from .executor import Executor, Outcome

log = logging.getLogger("cloudq.worker")


def task_id_of(delivery: Delivery) -> str | None:
    """The task id a delivery's body names (None: unreadable, or a claim-check pointer): the held
    envelope's when the revoke check decoded it, else a peek at the body."""
    if delivery.malformed is not None:
        return None
    env = decoded.held(delivery)
    return env.id if env is not None else peek_id(delivery.body)


def decoded_id(delivery: Delivery, key: bytes | None) -> str | None:
    """The task id of a delivery, its envelope decoded and held for the executor."""
    if delivery.malformed is not None:
        return None
    try:
        return decoded.envelope(delivery, key).id
    except MalformedMessage:  # dead-lettered when it runs; a revoked id is still found
        return peek_id(delivery.body)


class RevokeCheck:
    """Reads the REVOKED records of a batch; off with the ``revoke_check`` setting."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.enabled = app.settings.revoke_check
        self.key = app.signing_key

    def revoked(self, deliveries: Sequence[Delivery]) -> dict[str, ResultRecord]:
        """The REVOKED records of these deliveries' tasks, keyed by task id, in one read."""
        if not self.enabled or not deliveries:
            return {}
        key = self.key
        ids = list(dict.fromkeys(i for i in (decoded_id(d, key) for d in deliveries) if i is not None))
        return self.read(ids)

    def read(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """The REVOKED records among ``task_ids``: one ``get_many`` (per-id ``get`` without it)."""
        if not self.enabled or not task_ids:
            return {}
        try:
            records = read_many(self.app.results, task_ids, runtime=True)
        except Exception as exc:
            log.warning(
                "revoke check of %d task(s) failed, running them unchecked: %s: %s",
                len(task_ids),
                type(exc).__name__,
                exc,
            )
            return {}
        return {task_id: r for task_id, r in records.items() if r.state == states.REVOKED}

    def run(self, executor: Executor, delivery: Delivery, revoked: Mapping[str, ResultRecord]) -> Outcome:
        """Run ``delivery`` unless the batch's check found it revoked."""
        record = revoked.get(task_id_of(delivery) or "") if revoked else None
        if record is not None:  # it takes the held envelope too
            return executor.revoked(delivery, record)
        return executor.execute(delivery)


class KnownRevoked:
    """The worker's REVOKED records of messages it holds (found at receive or by the poll),
    taken by the slot about to run one. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, ResultRecord] = {}

    def add(self, records: Mapping[str, ResultRecord]) -> None:
        if records:
            with self._lock:
                self._records.update(records)

    def take(self, delivery: Delivery) -> ResultRecord | None:
        """The record of ``delivery``'s task if it is known revoked (forgotten here)."""
        if not self._records:  # the usual case: no body to peek
            return None
        task_id = task_id_of(delivery)
        with self._lock:
            return self._records.pop(task_id, None) if task_id is not None else None

    def __len__(self) -> int:
        return len(self._records)
