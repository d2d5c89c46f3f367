"""The behaviour every result store must have, as a pytest class to subclass.

::

    class TestMyStore(ResultStoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)
            yield store
            store.close()

Each test uses fresh task ids, so a store may be shared between tests. The contract includes the
capabilities canvas, revocation, periodic tasks and operations need (``ManyReader.get_many``,
``AtomicCounter``, ``HeartbeatStore``, ``TaskIndex``); a store that offloads large results overrides ``offloading_store`` with one
that has its bucket configured.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from .. import states
from ..backends.common import COUNTER_PREFIX, WORKER_PREFIX
from ..errors import InvalidArguments
from ..interfaces import (
    AtomicCounter,
    Claim,
    Heartbeat,
    HeartbeatStore,
    ManyReader,
    ResultRecord,
    ResultStore,
    TaskIndex,
    TaskSummary,
)
from .waiting import eventually

JSON_RESULTS = [
    pytest.param({"nested": {"list": [1, 2.5, None, True, "x"], "empty": {}}, "n": -3}, id="nested-dict"),
    pytest.param([1, [2, [3, []]], {"k": "v"}], id="list"),
    pytest.param('h\u00e9llo \u65e5\u672c\u8a9e \U0001f680 "quoted" \\ \u0000', id="unicode"),
    pytest.param([0.1, -1.5e-300, 1e300, 3.141592653589793, 0.0], id="floats"),
    pytest.param(None, id="none"),
    pytest.param(2**40 + 1, id="int"),
    pytest.param(False, id="bool"),
    pytest.param("", id="empty-string"),
]


def new_task_id() -> str:
    return uuid.uuid4().hex


def canonical(record: ResultRecord | None) -> str:
    """A record as JSON text: compares types too (1 != 1.0 != True), unlike ``==``."""
    assert record is not None, "record is absent"
    return json.dumps(record.to_dict(), sort_keys=True)


class ResultStoreContract:
    """Subclass with a ``store`` fixture; every ``test_*`` here then runs on that store."""

    pytestmark: ClassVar[list[Any]] = [pytest.mark.timeout(60)]

    #: how long a claim is held in the test where it must run out (seconds)
    short_claim_s: ClassVar[float] = 0.3

    #: threads that increment one counter at once
    concurrent_increments: ClassVar[int] = 16

    #: a result this large is offloaded by stores that offload (DynamoDB's 400 KB, Firestore's 1 MiB)
    large_result_bytes: ClassVar[int] = 1_100_000

    @pytest.fixture
    def store(self) -> ResultStore:
        pytest.fail(f"{type(self).__name__} must define a 'store' fixture")

    @pytest.fixture
    def offloading_store(self, store: ResultStore) -> ResultStore:
        """A store that moves large results out of the record (a bucket configured); by default
        ``store``, for stores that keep every result inline."""
        return store

    # -- get and set -------------------------------------------------------------------------

    def test_absent_record_reads_as_none(self, store: ResultStore) -> None:
        assert store.get(new_task_id()) is None

    @pytest.mark.parametrize("result", JSON_RESULTS)
    def test_every_field_round_trips(self, store: ResultStore, result: Any) -> None:
        now = time.time()
        record = ResultRecord(
            task_id=new_task_id(),
            state=states.SUCCESS,
            task_name="app.tasks.add",
            result=result,
            error_type="ValueError",
            error_message="bad \u00e9",
            traceback="Traceback (most recent call last):\n  ...\nValueError: bad",
            attempts=3,
            started_at=now - 1.25,
            finished_at=now,
            expires_at=now + 3600.5,
            claim_owner="worker-1",
            claim_until=now + 60.125,
        )
        expected = canonical(record)
        assert store.set(record) is True
        assert canonical(store.get(record.task_id)) == expected
        assert canonical(record) == expected, "set must not change the record it was given"

    @pytest.mark.parametrize("state", [states.STARTED, states.RETRY, states.SUCCESS, states.FAILURE])
    def test_extended_fields_round_trip(self, store: ResultStore, state: str) -> None:
        """Celery's ``result_extended``: the call (JSON as sent), the queue and the worker."""
        record = ResultRecord(
            task_id=new_task_id(),
            state=state,
            task_name="app.tasks.add",
            result=[1, {"k": None}] if state == states.SUCCESS else None,
            attempts=2,
            args=[1, 2.5, "h\u00e9llo \U0001f680", [None, True, {"nested": []}], 2**40 + 1],
            kwargs={"page": 3, "when": None, "tags": ["a", "b"], "empty": {}},
            queue="emails",
            worker="cloudq@host-1",
        )
        expected = canonical(record)
        assert store.set(record) is True
        assert canonical(store.get(record.task_id)) == expected
        bare = ResultRecord(new_task_id(), state, "app.tasks.add", args=[], kwargs={})
        store.set(bare)
        got = store.get(bare.task_id)
        assert got is not None and (got.args, got.kwargs, got.queue, got.worker) == ([], {}, None, None)

    @pytest.mark.parametrize("state", [states.STARTED, states.RETRY, states.SUCCESS, states.FAILURE])
    def test_lineage_fields_round_trip(self, store: ResultStore, state: str) -> None:
        """The envelope's lineage (``sent_at``, parent, root and group ids): kept on every record,
        as Celery keeps ``parent_id``/``group_id``, so a task page links its canvas."""
        record = ResultRecord(
            task_id=new_task_id(),
            state=state,
            task_name="app.tasks.add",
            attempts=1,
            sent_at=time.time() - 0.375,
            parent_id=new_task_id(),
            root_id=new_task_id(),
            group_id="grp-\u00e9-" + new_task_id(),
        )
        expected = canonical(record)
        assert store.set(record) is True
        assert canonical(store.get(record.task_id)) == expected
        bare = ResultRecord(new_task_id(), state, "app.tasks.add")
        store.set(bare)
        got = store.get(bare.task_id)
        assert got is not None and (got.sent_at, got.parent_id, got.root_id, got.group_id) == (None, None, None, None)

    def test_get_returns_a_copy(self, store: ResultStore) -> None:
        record = ResultRecord(new_task_id(), states.SUCCESS, result={"a": 1})
        store.set(record)
        got = store.get(record.task_id)
        assert got is not None and got is not record
        got.state = states.FAILURE
        assert store.get(record.task_id).state == states.SUCCESS  # type: ignore[union-attr]

    def test_a_terminal_record_is_never_overwritten(self, store: ResultStore) -> None:
        task_id = new_task_id()
        assert store.set(ResultRecord(task_id, states.SUCCESS, result=1)) is True
        for late in (states.FAILURE, states.PENDING, states.STARTED, states.RETRY, states.SUCCESS):
            assert store.set(ResultRecord(task_id, late, result=2)) is False, late
        got = store.get(task_id)
        assert got is not None and (got.state, got.result) == (states.SUCCESS, 1)

    def test_every_terminal_state_is_final_and_cannot_be_claimed(self, store: ResultStore) -> None:
        """REVOKED (an expired or revoked task) is as final as SUCCESS and FAILURE."""
        for terminal in sorted(states.TERMINAL_STATES):
            task_id = new_task_id()
            assert store.set(ResultRecord(task_id, terminal, "t")) is True
            for late in (states.STARTED, states.RETRY, states.SUCCESS, states.FAILURE, states.REVOKED):
                assert store.set(ResultRecord(task_id, late, "t", result=2)) is False, (terminal, late)
            assert store.claim(task_id, "worker-a", time.time() + 60).acquired is False, terminal
            got = store.get(task_id)
            assert got is not None and got.state == terminal

    def test_non_terminal_records_advance_to_terminal(self, store: ResultStore) -> None:
        task_id = new_task_id()
        for attempt, state in enumerate((states.PENDING, states.STARTED, states.RETRY, states.STARTED), 1):
            assert store.set(ResultRecord(task_id, state, "t", attempts=attempt)) is True
            got = store.get(task_id)
            assert got is not None and (got.state, got.attempts) == (state, attempt)
        assert store.set(ResultRecord(task_id, states.FAILURE, "t", error_type="KeyError", attempts=5)) is True
        got = store.get(task_id)
        assert got is not None and (got.state, got.error_type, got.attempts) == (states.FAILURE, "KeyError", 5)

    # -- expiry ------------------------------------------------------------------------------

    def test_an_expired_record_reads_as_absent(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.set(ResultRecord(task_id, states.SUCCESS, result=1, expires_at=time.time() - 1))
        assert store.get(task_id) is None

    def test_an_expired_terminal_record_may_be_replaced(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.set(ResultRecord(task_id, states.SUCCESS, result=1, expires_at=time.time() - 1))
        assert store.set(ResultRecord(task_id, states.SUCCESS, result=2)) is True
        got = store.get(task_id)
        assert got is not None and got.result == 2

    def test_a_record_without_expiry_or_expiring_later_is_kept(self, store: ResultStore) -> None:
        forever, later = new_task_id(), new_task_id()
        store.set(ResultRecord(forever, states.SUCCESS, result="kept"))
        store.set(ResultRecord(later, states.SUCCESS, result="kept", expires_at=time.time() + 3600))
        assert [store.get(t).result for t in (forever, later)] == ["kept", "kept"]  # type: ignore[union-attr]

    # -- claims ------------------------------------------------------------------------------

    def test_the_first_claim_acquires_and_records_the_owner(self, store: ResultStore) -> None:
        task_id, until = new_task_id(), time.time() + 60
        assert store.claim(task_id, "worker-a", until, "app.slow") == Claim(True, None)
        got = store.get(task_id)
        assert got is not None
        assert (got.state, got.claim_owner, got.claim_until, got.task_name) == (
            states.STARTED,
            "worker-a",
            until,
            "app.slow",
        )

    def test_a_held_claim_refuses_another_owner_and_shows_the_holder(self, store: ResultStore) -> None:
        task_id, until = new_task_id(), time.time() + 60
        store.claim(task_id, "worker-a", until)
        claim = store.claim(task_id, "worker-b", time.time() + 60)
        assert claim.acquired is False
        assert claim.record is not None and (claim.record.claim_owner, claim.record.claim_until) == ("worker-a", until)
        assert store.get(task_id).claim_owner == "worker-a"  # type: ignore[union-attr]

    def test_the_holder_may_claim_again(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.claim(task_id, "worker-a", time.time() + 60)
        assert store.claim(task_id, "worker-a", time.time() + 120).acquired is True

    def test_a_lapsed_claim_can_be_taken_by_another_owner(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.claim(task_id, "worker-a", time.time() + self.short_claim_s)
        time.sleep(self.short_claim_s + 0.05)
        assert store.claim(task_id, "worker-b", time.time() + 60).acquired is True
        assert store.get(task_id).claim_owner == "worker-b"  # type: ignore[union-attr]

    def test_a_terminal_record_cannot_be_claimed_and_is_returned(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.set(ResultRecord(task_id, states.SUCCESS, "t", result={"done": True}))
        claim = store.claim(task_id, "worker-a", time.time() + 60)
        assert claim.acquired is False
        assert claim.record is not None and (claim.record.state, claim.record.result) == (
            states.SUCCESS,
            {"done": True},
        )
        assert store.get(task_id).state == states.SUCCESS  # type: ignore[union-attr]

    def test_a_claim_keeps_the_attempt_count(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.set(ResultRecord(task_id, states.RETRY, "t", attempts=2))
        assert store.claim(task_id, "worker-a", time.time() + 60).acquired is True
        got = store.get(task_id)
        assert got is not None and (got.state, got.attempts) == (states.STARTED, 2)

    def test_a_claimed_task_can_finish(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.claim(task_id, "worker-a", time.time() + 60)
        assert store.set(ResultRecord(task_id, states.SUCCESS, "t", result=7)) is True
        assert store.claim(task_id, "worker-b", time.time() + 60).acquired is False

    # -- concurrency -------------------------------------------------------------------------

    def test_concurrent_terminal_writes_have_exactly_one_winner(self, store: ResultStore) -> None:
        task_id, writers = new_task_id(), 8
        store.set(ResultRecord(task_id, states.STARTED, "t"))
        outcomes = self._race(writers, lambda i: store.set(ResultRecord(task_id, states.SUCCESS, "t", result=i)))
        winners = [i for i, won in enumerate(outcomes) if won]
        assert len(winners) == 1, f"{len(winners)} writers won"
        assert store.get(task_id).result == winners[0]  # type: ignore[union-attr]

    def test_concurrent_claims_have_exactly_one_winner(self, store: ResultStore) -> None:
        task_id, owners = new_task_id(), 8
        outcomes = self._race(owners, lambda i: store.claim(task_id, f"worker-{i}", time.time() + 60).acquired)
        winners = [i for i, won in enumerate(outcomes) if won]
        assert len(winners) == 1, f"{len(winners)} owners acquired"
        assert store.get(task_id).claim_owner == f"worker-{winners[0]}"  # type: ignore[union-attr]

    @staticmethod
    def _race(n: int, attempt: Callable[[int], Any]) -> list[Any]:
        """Run ``attempt(i)`` for i in range(n) on n threads released together."""
        start = threading.Barrier(n)
        outcomes: list[Any] = [None] * n
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                start.wait()
                outcomes[i] = attempt(i)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        return outcomes

    # -- get_many ----------------------------------------------------------------------------

    @staticmethod
    def _many(store: ResultStore) -> ManyReader:
        assert isinstance(store, ManyReader), f"{type(store).__name__} does not implement get_many"
        return store

    def test_get_many_leaves_out_absent_and_expired_ids(self, store: ResultStore) -> None:
        now = time.time()
        done, running, expired, absent = (new_task_id() for _ in range(4))
        store.set(ResultRecord(done, states.SUCCESS, "t", result={"n": 1}, expires_at=now + 3600))
        store.set(ResultRecord(running, states.STARTED, "t", attempts=2))
        store.set(ResultRecord(expired, states.SUCCESS, "t", result=1, expires_at=now - 1))
        got = self._many(store).get_many([done, absent, running, expired])
        assert sorted(got) == sorted([done, running])
        for task_id in (done, running):
            assert canonical(got[task_id]) == canonical(store.get(task_id))

    def test_get_many_of_no_ids_or_repeated_ids(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.set(ResultRecord(task_id, states.SUCCESS, "t", result=3))
        assert self._many(store).get_many([]) == {}
        got = self._many(store).get_many([task_id, task_id, task_id])
        assert list(got) == [task_id] and got[task_id].result == 3

    def test_get_many_reads_more_ids_than_one_batch(self, store: ResultStore) -> None:
        """250 ids: more than a DynamoDB BatchGetItem (100) or a Firestore batch read holds."""
        ids = [new_task_id() for _ in range(250)]
        for i, task_id in enumerate(ids[:200]):
            store.set(ResultRecord(task_id, states.SUCCESS, "t", result=i))
        got = self._many(store).get_many(ids)
        assert {task_id: record.result for task_id, record in got.items()} == {t: i for i, t in enumerate(ids[:200])}

    def test_get_many_reads_offloaded_results(self, offloading_store: ResultStore) -> None:
        store = offloading_store
        large, small = new_task_id(), new_task_id()
        result = {"blob": "x" * self.large_result_bytes}
        store.set(ResultRecord(large, states.SUCCESS, "t", result=result))
        store.set(ResultRecord(small, states.SUCCESS, "t", result="small"))
        got = self._many(store).get_many([large, small])
        assert (got[large].result, got[small].result) == (result, "small")

    # -- counters ----------------------------------------------------------------------------

    @staticmethod
    def _counter(store: ResultStore) -> AtomicCounter:
        assert isinstance(store, AtomicCounter), f"{type(store).__name__} does not implement increment"
        return store

    def test_increment_creates_at_zero_and_returns_each_new_total(self, store: ResultStore) -> None:
        counters, key, other = self._counter(store), new_task_id(), new_task_id()
        assert [counters.increment(key), counters.increment(key, 4), counters.increment(other)] == [1, 5, 1]
        assert counters.increment(key, expires_at=time.time() + 3600) == 6

    def test_concurrent_increments_each_see_their_own_total(self, store: ResultStore) -> None:
        counters, key, n = self._counter(store), new_task_id(), self.concurrent_increments
        outcomes = self._race(n, lambda i: counters.increment(key, expires_at=time.time() + 3600))
        assert sorted(outcomes) == list(range(1, n + 1))

    def test_a_counter_is_never_read_as_a_task_record(self, store: ResultStore) -> None:
        counters, key = self._counter(store), new_task_id()
        counters.increment(key)
        assert store.get(key) is None and store.get(COUNTER_PREFIX + key) is None
        assert self._many(store).get_many([key, COUNTER_PREFIX + key]) == {}
        store.set(ResultRecord(key, states.SUCCESS, "t", result="a task with the key as its id"))
        assert counters.increment(key) == 2
        got = store.get(key)
        assert got is not None and got.result == "a task with the key as its id"

    def test_delete_counter_starts_it_again(self, store: ResultStore) -> None:
        counters, key = self._counter(store), new_task_id()
        counters.increment(key, 3)
        counters.delete_counter(key)
        assert counters.increment(key) == 1
        counters.delete_counter(new_task_id())  # deleting an unknown counter is not an error

    def test_an_expired_counter_starts_again_at_zero(self, store: ResultStore) -> None:
        counters, key = self._counter(store), new_task_id()
        assert counters.increment(key, 2, expires_at=time.time() - 1) == 2
        assert counters.increment(key, 5, expires_at=time.time() + 3600) == 5  # the old one had expired
        assert counters.increment(key, expires_at=time.time() + 3600) == 6

    def test_increment_refuses_bad_arguments(self, store: ResultStore) -> None:
        counters = self._counter(store)
        for key, by in (("", 1), (None, 1), ("k", 1.5), ("k", "1"), ("k", True)):
            with pytest.raises(InvalidArguments):
                counters.increment(key, by)  # type: ignore[arg-type]

    # -- forget ------------------------------------------------------------------------------

    def test_forget_removes_the_record(self, store: ResultStore) -> None:
        task_id = new_task_id()
        store.set(ResultRecord(task_id, states.SUCCESS, result=1))
        store.forget(task_id)
        assert store.get(task_id) is None
        assert store.set(ResultRecord(task_id, states.SUCCESS, result=2)) is True
        store.forget(new_task_id())  # forgetting an unknown id is not an error

    # -- worker presence (HeartbeatStore) ----------------------------------------------------

    @staticmethod
    def _presence(store: ResultStore) -> HeartbeatStore:
        assert isinstance(store, HeartbeatStore), f"{type(store).__name__} does not implement beat/alive"
        return store

    @staticmethod
    def _beats(store: HeartbeatStore, worker_id: str) -> list[Heartbeat]:
        return [beat for beat in store.alive() if beat.worker_id == worker_id]

    def test_a_beat_is_listed_with_its_info_and_refreshed_in_place(self, store: ResultStore) -> None:
        presence, worker_id = self._presence(store), f"cloudq@host.{new_task_id()}"
        info = {"queues": ["a", "b"], "concurrency": 4, "active": [{"id": "t1", "started": 1.5}], "x": None}
        presence.beat(Heartbeat(worker_id, time.time(), info), 60)
        beats = eventually(lambda: self._beats(presence, worker_id), bool, 10)
        assert [(b.worker_id, json.dumps(b.info, sort_keys=True)) for b in beats] == [
            (worker_id, json.dumps(info, sort_keys=True))
        ]
        later = time.time() + 1
        presence.beat(Heartbeat(worker_id, later, {"concurrency": 8}), 60)
        beats = eventually(lambda: self._beats(presence, worker_id), lambda b: bool(b) and b[0].seen_at == later, 10)
        assert [(b.seen_at, dict(b.info)) for b in beats] == [(later, {"concurrency": 8})]

    def test_a_beat_expires_after_its_ttl_and_zero_removes_it_at_once(self, store: ResultStore) -> None:
        presence, gone, leaving = self._presence(store), new_task_id(), new_task_id()
        presence.beat(Heartbeat(gone, time.time() - 10, {}), 5)  # its TTL ran out 5 s ago
        presence.beat(Heartbeat(leaving, time.time(), {}), 60)
        eventually(lambda: self._beats(presence, leaving), bool, 10)
        presence.beat(Heartbeat(leaving, time.time(), {}), 0)  # a stopping worker
        assert self._beats(presence, gone) == [] and self._beats(presence, leaving) == []

    def test_a_presence_record_is_never_read_as_a_task_record(self, store: ResultStore) -> None:
        presence, worker_id = self._presence(store), new_task_id()
        presence.beat(Heartbeat(worker_id, time.time(), {"hostname": "h"}), 60)
        assert store.get(worker_id) is None and store.get(WORKER_PREFIX + worker_id) is None
        if isinstance(store, TaskIndex):
            assert worker_id not in {s.task_id.removeprefix(WORKER_PREFIX) for s in store.recent(limit=1000)}

    # -- task index (TaskIndex) --------------------------------------------------------------

    @staticmethod
    def _index(store: ResultStore) -> TaskIndex:
        assert isinstance(store, TaskIndex), f"{type(store).__name__} does not implement recent"
        return store

    @staticmethod
    def _mine(summaries: list[TaskSummary], ids: set[str]) -> list[tuple[str, str, str]]:
        return [(s.task_id, s.task_name, s.state) for s in summaries if s.task_id in ids]

    def test_recent_lists_by_state_newest_first_from_the_writes_alone(self, store: ResultStore) -> None:
        index, since = self._index(store), time.time() - 1
        first, second, third, claimed = (new_task_id() for _ in range(4))
        store.set(ResultRecord(first, states.FAILURE, "t.fail", error_type="ValueError"))
        time.sleep(0.02)  # distinct write times: the order is what is checked
        store.set(ResultRecord(second, states.SUCCESS, "t.ok", result=1))
        time.sleep(0.02)
        store.set(ResultRecord(third, states.FAILURE, "t.fail2"))
        time.sleep(0.02)
        assert store.claim(claimed, "w1", time.time() + 60, "t.run").acquired
        ids = {first, second, third, claimed}
        every = [
            (claimed, "t.run", states.STARTED),
            (third, "t.fail2", states.FAILURE),
            (second, "t.ok", states.SUCCESS),
            (first, "t.fail", states.FAILURE),
        ]
        got = eventually(lambda: self._mine(index.recent(since=since, limit=1000), ids), lambda g: g == every, 10)
        assert got == every
        failures = self._mine(index.recent([states.FAILURE], since=since, limit=1000), ids)
        assert failures == [every[1], every[3]]
        two = self._mine(index.recent([states.FAILURE, states.STARTED], since=since, limit=1000), ids)
        assert two == [every[0], every[1], every[3]]

    def test_recent_follows_a_record_to_its_new_state(self, store: ResultStore) -> None:
        index, since, task_id = self._index(store), time.time() - 1, new_task_id()
        store.set(ResultRecord(task_id, states.STARTED, "t"))
        store.set(ResultRecord(task_id, states.SUCCESS, "t", result=2))

        def mine(state: str) -> list[tuple[str, str, str]]:
            return self._mine(index.recent([state], since=since, limit=1000), {task_id})

        assert eventually(lambda: mine(states.SUCCESS), bool, 10) == [(task_id, "t", states.SUCCESS)]
        assert mine(states.STARTED) == []

    def test_recent_honours_since_limit_and_expiry(self, store: ResultStore) -> None:
        index, since = self._index(store), time.time() - 1
        expired, live = new_task_id(), [new_task_id() for _ in range(3)]
        store.set(ResultRecord(expired, states.FAILURE, "t", expires_at=time.time() - 1))
        for task_id in live:
            store.set(ResultRecord(task_id, states.FAILURE, "t", expires_at=time.time() + 3600))
        ids = {expired, *live}
        got = eventually(
            lambda: self._mine(index.recent([states.FAILURE], since, 1000), ids), lambda g: len(g) == 3, 10
        )
        assert {row[0] for row in got} == set(live)
        assert len(index.recent([states.FAILURE], since, limit=2)) == 2
        assert self._mine(index.recent([states.FAILURE], since=time.time() + 60, limit=1000), ids) == []
