"""GroupResult: one handle on many tasks, read in batches (Celery's GroupResult).

Every poll reads all members in one request where the store can (``ManyReader.get_many``:
DynamoDB BatchGetItem, Firestore ``get_all``, one SQL query), else one ``get`` per member.
``save()`` stores the member ids as a record under the group's id so another process can
``GroupResult.restore(id)`` it; chords read their header that way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import states
from ..errors import ResultTimeout
from ..interfaces import ResultRecord
from ..results import AsyncResult, read_many
from ..util.polling import PollSchedule

if TYPE_CHECKING:
    from ..app import App

GROUP_TASK_NAME = "cloudq.group"  # the task_name of a saved group's record


class GroupResult:
    """The results of a group, in the group's order. ``id`` is the group id its members carry
    (``self.request.group``); ``parent`` the result of what ran before (a chain's previous step)."""

    def __init__(
        self,
        id: str,
        results: Sequence[AsyncResult],
        app: App | None = None,
        parent: AsyncResult | GroupResult | None = None,
    ) -> None:
        if app is None:
            from ..app import current_app

            app = current_app()
        self.id = id
        self.results = list(results)
        self.app = app
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and [r.id for r in other.results] == [r.id for r in self.results]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    # -- state: one batched read each ------------------------------------------------------------

    def _records(self) -> list[ResultRecord | None]:
        """Each member's record (None while absent), in order; terminal ones are cached."""
        missing = [r.id for r in self.results if r.final_record is None]
        found = read_many(self.app.results, missing) if missing else {}
        records: list[ResultRecord | None] = []
        for result in self.results:
            record = result.final_record
            if record is None:
                record = found.get(result.id)
                result.take_record(record)
            records.append(record)
        return records

    def ready(self) -> bool:
        """Every member has finished (succeeded, failed or been revoked)."""
        return all(record is not None and record.terminal for record in self._records())

    def successful(self) -> bool:
        return all(record is not None and record.state == states.SUCCESS for record in self._records())

    def failed(self) -> bool:
        """Any member failed (or was revoked)."""
        return any(
            record is not None and record.terminal and record.state != states.SUCCESS for record in self._records()
        )

    def waiting(self) -> bool:
        """Any member has not finished yet."""
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded (Celery counts successes only)."""
        return sum(1 for record in self._records() if record is not None and record.state == states.SUCCESS)

    # -- waiting ------------------------------------------------------------------------------

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        """The members' results in order, once each is ready, as Celery's ``join``: with
        ``propagate`` the first failed member (in group order, once those before it are ready)
        raises its exception; without, failures come back as exception values. ``callback(id,
        value)`` takes each result instead (then None is returned in its place). One batched read
        per poll; ResultTimeout after ``timeout`` seconds."""
        if disable_sync_subtasks and self.results:
            self.results[0].assert_will_not_block()
        schedule = PollSchedule(timeout, interval)
        values: list[Any] = []
        while True:
            records = self._records()
            values = []
            for result, record in zip(self.results, records, strict=True):
                if record is None or not record.terminal:
                    break
                value = result.outcome(record, propagate)
                values.append(value)
            else:
                if callback is not None:
                    for result, value in zip(self.results, values, strict=True):
                        callback(result.id, value)
                    return [None] * len(values)
                return values
            if schedule.expired():
                done = sum(1 for record in records if record is not None and record.terminal)
                raise ResultTimeout(f"group {self.id}: {done} of {len(self.results)} tasks ready after {timeout}s")
            time.sleep(schedule.next_pause())

    join = get
    join_native = get

    def revoke(self, terminate: bool = False, signal: str | int = "SIGTERM", **kwargs: Any) -> Any:
        """Revoke every member (``app.control.revoke`` with all their ids at once)."""
        control = getattr(self.app, "control", None)
        if control is None:
            from ..errors import InvalidOptions

            raise InvalidOptions("GroupResult.revoke needs app.control.revoke, which this cloudq does not have yet")
        return control.revoke([r.id for r in self.results], terminate=terminate, signal=signal, **kwargs)

    def forget(self) -> None:
        """Delete every member's record and the saved group."""
        for result in self.results:
            result.forget()
        self.app.results.forget(self.id)

    # -- saved by id ---------------------------------------------------------------------------

    def as_tuple(self) -> tuple[str, list[str]]:
        return self.id, [r.id for r in self.results]

    def save(self, *, chord_body: str | None = None) -> GroupResult:
        """Store the member ids under the group's id (one write; kept ``result_expires``); a
        chord's header also names its body (``chord_body``), so a member's page links it."""
        keep = self.app.settings.result_expires
        now = time.time()
        saved: dict[str, Any] = {"results": [r.id for r in self.results]}
        if chord_body is not None:
            saved["chord_body"] = chord_body
        self.app.results.set(
            ResultRecord(
                self.id,
                states.SUCCESS,
                GROUP_TASK_NAME,
                result=saved,
                finished_at=now,
                expires_at=now + keep if keep else None,
            )
        )
        return self

    @classmethod
    def restore(cls, id: str, app: App | None = None) -> GroupResult | None:
        """The group saved under ``id``, or None (never saved, or expired)."""
        if app is None:
            from ..app import current_app

            app = current_app()
        record = app.results.get(id)
        ids = member_ids(record)
        if ids is None:
            return None
        return cls(id, [AsyncResult(task_id, app=app) for task_id in ids], app=app)

    def delete(self) -> None:
        """Remove the saved group (the members' records stay)."""
        self.app.results.forget(self.id)


def member_ids(record: ResultRecord | None) -> list[str] | None:
    """The member ids of a saved group's record, or None when it is not one."""
    if record is None or record.task_name != GROUP_TASK_NAME or not isinstance(record.result, dict):
        return None
    ids = record.result.get("results")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return ids


def chord_body_id(record: ResultRecord | None) -> str | None:
    """The body's task id a saved chord header names, else None (a plain group, or not a group)."""
    if member_ids(record) is None:
        return None
    assert record is not None
    body = record.result.get("chord_body")
    return body if isinstance(body, str) and body else None
