"""The behaviour every broker must have, as a pytest class to subclass.

::

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        def broker(self):
            broker = MyBroker(...)
            yield broker
            broker.close()

Optional fixtures to override: ``queue`` (a fresh queue name per test), ``lease_s`` and
``delay_s`` (or just the class attributes ``lease_seconds`` / ``delay_seconds``: short for fast
tests, 2-3 s where a cloud emulator needs it), and ``broker_with_max_deliveries`` (``(broker, n)`` for a broker that dead-letters a message after
``n`` deliveries; skipped by default). Capability flags come from ``broker.limits``; quirks of
a test environment are class attributes (e.g. ``stale_receipts_ignored = False`` on moto).

Written for real services: results are collected by polling until a deadline, never by
assuming one receive returns everything; the only timing assertions are "not visible before
X", and those only fail when the message arrived before X had passed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import pytest

from ..errors import MessageTooLarge
from ..interfaces import Broker, Delivery, OutgoingMessage, QueueStats
from .waiting import eventually

T = TypeVar("T")

LONG_LEASE_S = 30.0  # a lease that cannot run out during a test


def unique_queue(prefix: str = "cq") -> str:
    """A queue name valid on every backend (SQS, Pub/Sub, SQLite) and unused so far."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def receive_until(
    broker: Broker,
    queue: str,
    count: int,
    *,
    lease_s: float,
    timeout: float,
    max_messages: int | None = None,
) -> list[Delivery]:
    """Receive (without acking) until ``count`` deliveries arrived or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    batch = max_messages or broker.limits.max_batch
    got: list[Delivery] = []
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait = min(1.0, remaining, broker.limits.max_wait_s)
        received = broker.receive(queue, min(batch, count - len(got)), lease_s, wait_s=wait)
        got.extend(received)
        if not received and not wait:
            time.sleep(min(0.05, remaining))
    return got


def assert_nothing_arrives(broker: Broker, queue: str, seconds: float, lease_s: float = LONG_LEASE_S) -> None:
    """Receive for ``seconds`` and fail on the first message that shows up."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        wait = min(0.25, remaining, broker.limits.max_wait_s)
        got = broker.receive(queue, broker.limits.max_batch, lease_s, wait_s=wait)
        assert not got, f"expected no message on {queue}, got {[d.body[:80] for d in got]}"
        if not wait:
            time.sleep(min(0.05, remaining))


def bodies(deliveries: Sequence[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]


class BrokerContract:
    """Subclass with a ``broker`` fixture; every ``test_*`` here then runs on that broker."""

    pytestmark: ClassVar[list[Any]] = [pytest.mark.timeout(120)]

    #: the lease (seconds) the lease tests use: short for speed, long enough for the service
    lease_seconds: ClassVar[float] = 1.0
    #: the delay (seconds) the delay tests use
    delay_seconds: ClassVar[float] = 1.0
    #: seconds a "nothing else arrives" check listens for
    settle_s: ClassVar[float] = 0.5
    #: seconds to wait for something that must happen (generous: emulators are slow)
    timeout_s: ClassVar[float] = 15.0
    #: bodies may be any bytes, not just UTF-8 text
    binary_bodies: ClassVar[bool] = True
    #: a receipt from a lease that has since been handed out again changes nothing (moto: False)
    stale_receipts_ignored: ClassVar[bool] = True
    #: ``release`` does not count as a delivery (SQS counts every receive: False there)
    release_keeps_delivery_count: ClassVar[bool] = True
    #: ``stats`` and ``purge``'s count are exact (approximate on SQS, absent on Pub/Sub)
    exact_stats: ClassVar[bool] = True
    #: the least part of ``wait_s`` an empty receive must wait (services may end a long poll early)
    long_poll_min_fraction: ClassVar[float] = 0.5

    # -- fixtures subclasses provide or override --------------------------------------------

    @pytest.fixture
    def broker(self) -> Broker:
        pytest.fail(f"{type(self).__name__} must define a 'broker' fixture")

    @pytest.fixture
    def queue(self) -> str:
        return unique_queue()

    @pytest.fixture
    def lease_s(self) -> float:
        return self.lease_seconds

    @pytest.fixture
    def delay_s(self) -> float:
        return self.delay_seconds

    @pytest.fixture
    def broker_with_max_deliveries(self) -> tuple[Broker, int]:
        pytest.skip("this backend has no max-deliveries option in its test setup")

    # -- helpers -----------------------------------------------------------------------------

    def receive_one(self, broker: Broker, queue: str, lease_s: float = LONG_LEASE_S) -> Delivery:
        got = receive_until(broker, queue, 1, lease_s=lease_s, timeout=self.timeout_s, max_messages=1)
        assert len(got) == 1, f"no message arrived on {queue} within {self.timeout_s}s"
        return got[0]

    def send_one(self, broker: Broker, queue: str, body: bytes, **options: Any) -> str:
        ids = broker.send(queue, [OutgoingMessage(body, **options)])
        assert len(ids) == 1
        return ids[0]

    def stats_become(self, broker: Broker, queue: str, expected: tuple[int, int, int, int]) -> None:
        def counts(stats: QueueStats) -> tuple[int, int, int, int]:
            return stats.ready, stats.in_flight, stats.delayed, stats.dead_lettered

        stats = eventually(lambda: broker.stats(queue), lambda s: counts(s) == expected, self.timeout_s)
        assert stats.queue == queue
        assert counts(stats) == expected, f"(ready, in_flight, delayed, dead_lettered) = {counts(stats)}"

    # -- send, receive, ack ------------------------------------------------------------------

    def test_send_receive_ack(self, broker: Broker, queue: str, lease_s: float) -> None:
        attributes = {"task": "app.add", "trace": "abc-123"}
        message_id = self.send_one(broker, queue, b'{"hello": "world"}', attributes=attributes)
        delivery = self.receive_one(broker, queue, lease_s)
        assert delivery.body == b'{"hello": "world"}'
        assert delivery.queue == queue
        assert delivery.message_id == message_id
        assert dict(delivery.attributes) == attributes
        if broker.limits.counts_deliveries:
            assert delivery.delivery_count == 1
        broker.ack([delivery])
        # acked for good: it does not come back after its lease would have run out
        assert_nothing_arrives(broker, queue, lease_s + self.settle_s)

    def test_send_returns_one_distinct_id_per_message(self, broker: Broker, queue: str) -> None:
        ids = broker.send(queue, [OutgoingMessage(f'{{"n": {i}}}'.encode()) for i in range(5)])
        assert len(ids) == 5 and len(set(ids)) == 5 and all(isinstance(i, str) and i for i in ids)
        got = receive_until(broker, queue, 5, lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        assert {d.message_id for d in got} == set(ids)
        broker.ack(got)

    def test_utf8_json_bodies_round_trip_exactly(self, broker: Broker, queue: str) -> None:
        sent = [
            '{"text": "h\u00e9llo w\u00f6rld \u2013 \u65e5\u672c\u8a9e \U0001f680"}'.encode(),
            b'{"escaped": "quote \\" backslash \\\\ nul \\u0000 newline \\n"}',
            b"[]",
            ('{"long": "' + "x" * 5000 + '"}').encode(),
        ]
        broker.send(queue, [OutgoingMessage(b) for b in sent])
        got = receive_until(broker, queue, len(sent), lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        assert sorted(bodies(got)) == sorted(sent)
        broker.ack(got)

    def test_binary_bodies_round_trip_exactly(self, broker: Broker, queue: str) -> None:
        if not self.binary_bodies:
            pytest.skip("this broker carries text bodies only")
        sent = [bytes(range(256)), b"\x00", b"\xff\xfe\x00\x01 not utf-8 \xc3\x28"]
        broker.send(queue, [OutgoingMessage(b) for b in sent])
        got = receive_until(broker, queue, len(sent), lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        assert sorted(bodies(got)) == sorted(sent)
        broker.ack(got)

    def test_empty_batches_are_no_ops(self, broker: Broker, queue: str) -> None:
        assert broker.send(queue, []) == []
        broker.ack([])
        broker.nack([])
        broker.nack([], 5)
        broker.release([])
        broker.extend([], 10)
        broker.dead_letter([], "nothing")
        assert broker.dead_letters(queue) == []

    def test_ack_accepts_deliveries_from_several_queues(self, broker: Broker, queue: str, lease_s: float) -> None:
        other = unique_queue()
        self.send_one(broker, queue, b"first")
        self.send_one(broker, other, b"second")
        got = [self.receive_one(broker, queue, lease_s), self.receive_one(broker, other, lease_s)]
        assert bodies(got) == [b"first", b"second"]
        broker.ack(got)
        assert_nothing_arrives(broker, queue, lease_s + self.settle_s)
        assert_nothing_arrives(broker, other, self.settle_s)

    # -- leases ------------------------------------------------------------------------------

    def test_a_leased_message_is_not_given_to_anyone_else(self, broker: Broker, queue: str) -> None:
        self.send_one(broker, queue, b"mine")
        delivery = self.receive_one(broker, queue)
        assert_nothing_arrives(broker, queue, self.settle_s)
        broker.ack([delivery])

    def test_an_expired_lease_is_delivered_again_with_a_higher_count(
        self, broker: Broker, queue: str, lease_s: float
    ) -> None:
        message_id = self.send_one(broker, queue, b"again", attributes={"k": "v"})
        first = self.receive_one(broker, queue, lease_s)
        leased_at = time.monotonic()
        early = broker.receive(queue, 10, LONG_LEASE_S)
        assert not early or time.monotonic() - leased_at >= lease_s, "redelivered before its lease ran out"
        second = early[0] if early else self.receive_one(broker, queue, LONG_LEASE_S)
        assert (second.body, second.message_id, dict(second.attributes)) == (b"again", message_id, {"k": "v"})
        if broker.limits.counts_deliveries:
            assert (first.delivery_count, second.delivery_count) == (1, 2)
        broker.ack([second])

    def test_a_stale_receipt_changes_nothing(self, broker: Broker, queue: str, lease_s: float) -> None:
        if not self.stale_receipts_ignored:
            pytest.skip("this service acts on stale receipts")
        self.send_one(broker, queue, b"stale")
        stale = self.receive_one(broker, queue, lease_s)
        current = self.receive_one(broker, queue, LONG_LEASE_S)  # after the first lease ran out
        broker.ack([stale])
        broker.nack([stale], 0)
        broker.release([stale])
        broker.extend([stale], 0)
        broker.dead_letter([stale], "stale")
        assert broker.dead_letters(queue) == []
        assert_nothing_arrives(broker, queue, self.settle_s)  # still leased under the current receipt
        broker.nack([current])  # the current receipt still works, and the message is still there
        again = self.receive_one(broker, queue)
        assert again.message_id == current.message_id
        broker.ack([again])

    def test_extend_keeps_a_message_invisible_past_its_first_lease(
        self, broker: Broker, queue: str, lease_s: float
    ) -> None:
        self.send_one(broker, queue, b"long task")
        delivery = self.receive_one(broker, queue, lease_s)
        extended_at = time.monotonic()
        broker.extend([delivery], lease_s * 4)
        time.sleep(lease_s * 1.5)
        early = broker.receive(queue, 10, LONG_LEASE_S)
        assert not early or time.monotonic() - extended_at >= lease_s * 4, "redelivered while its lease was extended"
        broker.ack([delivery])  # the receipt is still the current one
        assert_nothing_arrives(broker, queue, lease_s * 2.5 + self.settle_s)

    def test_nack_makes_a_message_available_at_once(self, broker: Broker, queue: str) -> None:
        self.send_one(broker, queue, b"retry me")
        first = self.receive_one(broker, queue)
        broker.nack([first])
        second = self.receive_one(broker, queue)
        assert second.body == b"retry me" and second.message_id == first.message_id
        if broker.limits.counts_deliveries:
            assert second.delivery_count == 2
        broker.ack([second])

    def test_nack_with_a_delay_hides_the_message_until_then(self, broker: Broker, queue: str, delay_s: float) -> None:
        self.send_one(broker, queue, b"later")
        first = self.receive_one(broker, queue)
        nacked_at = time.monotonic()
        broker.nack([first], delay_s)
        early = broker.receive(queue, 10, LONG_LEASE_S)
        assert not early or time.monotonic() - nacked_at >= delay_s, "visible before its nack delay"
        second = early[0] if early else self.receive_one(broker, queue)
        assert second.message_id == first.message_id
        broker.ack([second])

    def test_release_makes_a_message_available_at_once_uncounted(self, broker: Broker, queue: str) -> None:
        self.send_one(broker, queue, b"prefetched")
        first = self.receive_one(broker, queue)
        broker.release([first])
        second = self.receive_one(broker, queue)
        assert second.message_id == first.message_id
        if broker.limits.counts_deliveries and self.release_keeps_delivery_count:
            assert second.delivery_count == first.delivery_count
        broker.ack([second])

    # -- delays ------------------------------------------------------------------------------

    def test_delayed_message_is_hidden_until_due(self, broker: Broker, queue: str, delay_s: float) -> None:
        if not broker.limits.per_message_delay:
            pytest.skip("this broker has no per-message delay")
        sent_at = time.monotonic()
        broker.send(queue, [OutgoingMessage(b"delayed", delay_s=delay_s), OutgoingMessage(b"now")])
        first = self.receive_one(broker, queue)
        assert first.body == b"now" or time.monotonic() - sent_at >= delay_s, "delayed message came before its delay"
        early = broker.receive(queue, 10, LONG_LEASE_S)
        assert not early or time.monotonic() - sent_at >= delay_s, "delayed message came before its delay"
        got = [first, *early]
        got += receive_until(broker, queue, 2 - len(got), lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        assert sorted(bodies(got)) == [b"delayed", b"now"]
        if broker.limits.counts_deliveries:
            assert [d.delivery_count for d in got] == [1, 1]
        broker.ack(got)

    # -- dead letters ------------------------------------------------------------------------

    def test_dead_letter_keeps_body_reason_and_id(self, broker: Broker, queue: str) -> None:
        message_id = self.send_one(broker, queue, b'{"bad": true}')
        delivery = self.receive_one(broker, queue)
        broker.dead_letter([delivery], "InvalidArguments: a: not an int")
        dead = eventually(lambda: broker.dead_letters(queue), bool, self.timeout_s)
        assert [(d.body, d.reason, d.queue, d.message_id) for d in dead] == [
            (b'{"bad": true}', "InvalidArguments: a: not an int", queue, message_id)
        ]
        assert_nothing_arrives(broker, queue, self.settle_s)
        if self.exact_stats:
            self.stats_become(broker, queue, (0, 0, 0, 1))

    def test_dead_letters_respects_limit(self, broker: Broker, queue: str) -> None:
        broker.send(queue, [OutgoingMessage(f"{i}".encode()) for i in range(3)])
        got = receive_until(broker, queue, 3, lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        broker.dead_letter(got, "no")
        eventually(lambda: broker.dead_letters(queue), lambda d: len(d) == 3, self.timeout_s)
        assert len(broker.dead_letters(queue, limit=2)) == 2

    def test_broker_dead_letters_after_max_deliveries(
        self, broker_with_max_deliveries: tuple[Broker, int], queue: str
    ) -> None:
        broker, limit = broker_with_max_deliveries
        message_id = self.send_one(broker, queue, b"poison")
        for attempt in range(1, limit + 1):
            delivery = self.receive_one(broker, queue)
            if broker.limits.counts_deliveries:
                assert delivery.delivery_count == attempt
            broker.nack([delivery])

        def dead_or_delivered() -> list[Any]:
            extra = broker.receive(queue, 10, LONG_LEASE_S)
            assert not extra, f"delivered {limit + 1} times despite max deliveries {limit}"
            return broker.dead_letters(queue)

        dead = eventually(dead_or_delivered, bool, self.timeout_s)
        assert [(d.body, d.message_id) for d in dead] == [(b"poison", message_id)]
        assert dead[0].reason

    # -- batches and limits ------------------------------------------------------------------

    def test_receive_respects_max_messages_and_max_batch(self, broker: Broker, queue: str) -> None:
        max_batch = broker.limits.max_batch
        total = max_batch + 10  # still more than max_batch left after the first receive
        broker.send(queue, [OutgoingMessage(b"%d" % i) for i in range(total)])
        # wait until everything is receivable, so a short batch can't be explained by propagation
        if self.exact_stats:
            self.stats_become(broker, queue, (total, 0, 0, 0))
        few = broker.receive(queue, 3, LONG_LEASE_S, wait_s=min(1.0, broker.limits.max_wait_s))
        assert 1 <= len(few) <= 3
        many = broker.receive(queue, total, LONG_LEASE_S, wait_s=min(1.0, broker.limits.max_wait_s))
        assert len(many) <= max_batch
        broker.ack([*few, *many])

    def test_a_batch_larger_than_max_batch_all_arrives(self, broker: Broker, queue: str) -> None:
        total = 2 * broker.limits.max_batch + 1
        sent = [f'{{"n": {i}}}'.encode() for i in range(total)]
        ids = broker.send(queue, [OutgoingMessage(b) for b in sent])
        assert len(ids) == total
        got = receive_until(broker, queue, total, lease_s=LONG_LEASE_S, timeout=self.timeout_s * 2)
        assert sorted(bodies(got)) == sorted(sent)
        assert {d.message_id for d in got} == set(ids)
        broker.ack(got)

    def test_an_oversize_body_raises_and_sends_nothing(self, broker: Broker, queue: str) -> None:
        limit = broker.limits.max_body_bytes
        batch = [OutgoingMessage(b"fine"), OutgoingMessage(b"x" * (limit + 1)), OutgoingMessage(b"also fine")]
        with pytest.raises(MessageTooLarge) as caught:
            broker.send(queue, batch)
        assert caught.value.size == limit + 1 and caught.value.limit == limit
        assert str(limit) in str(caught.value)
        assert_nothing_arrives(broker, queue, self.settle_s)

    def test_a_body_of_exactly_the_limit_is_accepted(self, broker: Broker, queue: str) -> None:
        body = b"y" * broker.limits.max_body_bytes
        self.send_one(broker, queue, body)
        delivery = self.receive_one(broker, queue)
        assert delivery.body == body
        broker.ack([delivery])

    # -- concurrency -------------------------------------------------------------------------

    def test_concurrent_consumers_never_share_a_message_and_get_all(self, broker: Broker, queue: str) -> None:
        total, consumers = 300, 4
        ids = broker.send(queue, [OutgoingMessage(b"%d" % i) for i in range(total)])
        seen: list[list[str]] = [[] for _ in range(consumers)]
        start = threading.Barrier(consumers)
        deadline = time.monotonic() + self.timeout_s * 2
        errors: list[BaseException] = []

        def consume(mine: list[str]) -> None:
            try:
                start.wait()
                while sum(map(len, seen)) < total and time.monotonic() < deadline:
                    got = broker.receive(queue, 10, LONG_LEASE_S, wait_s=min(0.2, broker.limits.max_wait_s))
                    mine.extend(d.message_id for d in got)
                    broker.ack(got)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=consume, args=(mine,)) for mine in seen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        everything = [message_id for mine in seen for message_id in mine]
        assert len(everything) == len(set(everything)), "a message was leased to two consumers at once"
        assert set(everything) == set(ids)

    def test_long_poll_returns_a_message_sent_while_waiting(self, broker: Broker, queue: str) -> None:
        if broker.limits.max_wait_s <= 0:
            pytest.skip("this broker does not long-poll")
        sender = threading.Timer(0.3, lambda: broker.send(queue, [OutgoingMessage(b"awaited")]))
        sender.start()
        try:
            started = time.monotonic()
            got = broker.receive(queue, 10, LONG_LEASE_S, wait_s=min(10.0, broker.limits.max_wait_s))
            took = time.monotonic() - started
            # empty before the message was even sent: the broker ignored wait_s (idle workers would spin)
            assert got or took >= 0.25, f"an empty receive with wait_s returned after {took:.3f}s"
            if not got:  # the service may end a long poll early; it must not miss the message
                got = receive_until(broker, queue, 1, lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        finally:
            sender.join()
        assert bodies(got) == [b"awaited"]
        broker.ack(got)

    def test_an_empty_long_poll_waits(self, broker: Broker, queue: str) -> None:
        if broker.limits.max_wait_s <= 0:
            pytest.skip("this broker does not long-poll")
        wait = min(1.0, broker.limits.max_wait_s)
        started = time.monotonic()
        got = broker.receive(queue, 10, LONG_LEASE_S, wait_s=wait)
        took = time.monotonic() - started
        assert got == []
        assert took >= wait * self.long_poll_min_fraction, (
            f"receive(wait_s={wait:g}) on an empty queue took {took:.3f}s"
        )

    # -- operations --------------------------------------------------------------------------

    def test_stats_count_each_state(self, broker: Broker, queue: str) -> None:
        if not self.exact_stats:
            pytest.skip("this broker's stats are approximate")
        self.stats_become(broker, queue, (0, 0, 0, 0))
        broker.send(queue, [OutgoingMessage(b"%d" % i) for i in range(4)])
        if broker.limits.per_message_delay:
            broker.send(queue, [OutgoingMessage(b"delayed", delay_s=LONG_LEASE_S)])
        delayed = 1 if broker.limits.per_message_delay else 0
        self.stats_become(broker, queue, (4, 0, delayed, 0))
        got = receive_until(broker, queue, 2, lease_s=LONG_LEASE_S, timeout=self.timeout_s, max_messages=2)
        self.stats_become(broker, queue, (2, 2, delayed, 0))
        broker.dead_letter(got[:1], "counted")
        self.stats_become(broker, queue, (2, 1, delayed, 1))
        broker.nack(got[1:], LONG_LEASE_S)
        self.stats_become(broker, queue, (2, 0, delayed + 1, 1))

    def test_purge_drops_ready_delayed_and_in_flight_messages(self, broker: Broker, queue: str) -> None:
        broker.send(queue, [OutgoingMessage(b"%d" % i) for i in range(3)])
        if broker.limits.per_message_delay:
            broker.send(queue, [OutgoingMessage(b"delayed", delay_s=LONG_LEASE_S)])
        in_flight = self.receive_one(broker, queue)
        purged = broker.purge(queue)
        if self.exact_stats:
            assert purged == (4 if broker.limits.per_message_delay else 3)
            self.stats_become(broker, queue, (0, 0, 0, 0))
        broker.nack([in_flight])  # its lease went with it: giving it back brings nothing back
        assert_nothing_arrives(broker, queue, self.settle_s)
        broker.ack([in_flight])

    # -- ordering ----------------------------------------------------------------------------

    def test_ordering_key_keeps_order_and_one_in_flight(self, broker: Broker, queue: str) -> None:
        if not broker.limits.ordering:
            pytest.skip("this broker does not honour ordering keys")
        sent = [b"%d" % i for i in range(5)]
        broker.send(queue, [OutgoingMessage(b, ordering_key="customer-1") for b in sent])
        first = self.receive_one(broker, queue)
        assert first.body == b"0" and first.ordering_key == "customer-1"
        assert_nothing_arrives(broker, queue, self.settle_s)  # the key is busy until the first is settled
        broker.ack([first])
        received = [first.body]
        while len(received) < len(sent):
            delivery = self.receive_one(broker, queue)
            received.append(delivery.body)
            broker.ack([delivery])
        assert received == sent
