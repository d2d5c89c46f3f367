"""What a ``DeadLetterAdmin`` broker must do, as a pytest class to subclass (like BrokerContract)::

    class TestMyRedrive(RedriveContract):
        @pytest.fixture
        def broker(self):
            ...

Each test dead-letters messages through the broker's own ``dead_letter`` (after spending a
delivery or two, so a reset count shows), then redrives or deletes them and reads both sides.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from ..interfaces import Broker, DeadLetter, DeadLetterAdmin, Delivery, OutgoingMessage
from .broker_contract import LONG_LEASE_S, receive_until, unique_queue
from .waiting import eventually


class RedriveContract:
    pytestmark: ClassVar[list[Any]] = [pytest.mark.timeout(180)]

    #: seconds to wait for something that must happen (emulators are slow)
    timeout_s: ClassVar[float] = 15.0

    @pytest.fixture
    def broker(self) -> Broker:
        pytest.fail(f"{type(self).__name__} must define a 'broker' fixture")

    @pytest.fixture
    def queue(self) -> str:
        return unique_queue()

    # -- helpers -----------------------------------------------------------------------------

    def receive(self, broker: Broker, queue: str, count: int) -> list[Delivery]:
        got = receive_until(broker, queue, count, lease_s=LONG_LEASE_S, timeout=self.timeout_s)
        assert len(got) == count, f"{len(got)} of {count} messages arrived on {queue}"
        return got

    def dead(self, broker: Broker, queue: str, count: int) -> list[DeadLetter]:
        """The dead letters, once there are ``count`` (listing may lag on cloud services)."""
        letters = eventually(lambda: broker.dead_letters(queue, 1000), lambda d: len(d) == count, self.timeout_s)
        assert len(letters) == count, [d.message_id for d in letters]
        return letters

    def bury(self, broker: Broker, queue: str, bodies: Sequence[bytes], reason: str = "ValueError: no") -> list[str]:
        """Send ``bodies``, spend one delivery of each (nack), then dead-letter them; their ids."""
        ids = broker.send(queue, [OutgoingMessage(b) for b in bodies])
        broker.nack(self.receive(broker, queue, len(bodies)))
        again = self.receive(broker, queue, len(bodies))
        assert all(d.delivery_count >= 2 for d in again), [d.delivery_count for d in again]
        broker.dead_letter(again, reason)
        self.dead(broker, queue, len(bodies))
        return ids

    @staticmethod
    def admin(broker: Broker) -> DeadLetterAdmin:
        assert isinstance(broker, DeadLetterAdmin), f"{type(broker).__name__} is not a DeadLetterAdmin"
        return broker

    # -- the contract ------------------------------------------------------------------------

    def test_dead_letters_carry_their_time(self, broker: Broker, queue: str) -> None:
        self.bury(broker, queue, [b"a"])
        [letter] = self.dead(broker, queue, 1)
        assert letter.dead_at is not None and letter.dead_at > 1.6e9

    def test_redrive_all_puts_every_message_back_with_a_fresh_count(self, broker: Broker, queue: str) -> None:
        bodies = [f"m{i}".encode() for i in range(5)]
        ids = self.bury(broker, queue, bodies)
        steps: list[int] = []
        moved = self.admin(broker).redrive(queue, progress=steps.append)
        assert moved == 5 and sum(steps) == 5
        back = self.receive(broker, queue, 5)
        assert sorted(d.body for d in back) == sorted(bodies)
        assert sorted(d.message_id for d in back) == sorted(ids)
        assert [d.delivery_count for d in back] == [1] * 5
        assert eventually(lambda: broker.dead_letters(queue), lambda d: not d, self.timeout_s) == []
        broker.ack(back)

    def test_redrive_by_ids_moves_only_those(self, broker: Broker, queue: str) -> None:
        ids = self.bury(broker, queue, [b"a", b"b", b"c"])
        letters = {d.body: d.message_id for d in self.dead(broker, queue, 3)}
        assert self.admin(broker).redrive(queue, [letters[b"b"]]) == 1
        [back] = self.receive(broker, queue, 1)
        assert (back.body, back.message_id) == (b"b", letters[b"b"])
        left = self.dead(broker, queue, 2)
        assert sorted(d.body for d in left) == [b"a", b"c"]
        assert {d.message_id for d in left} <= set(ids)

    def test_redrive_of_ids_not_there_moves_nothing(self, broker: Broker, queue: str) -> None:
        self.bury(broker, queue, [b"a"])
        assert self.admin(broker).redrive(queue, [f"absent-{uuid.uuid4().hex}"]) == 0
        assert len(self.dead(broker, queue, 1)) == 1
        assert receive_until(broker, queue, 1, lease_s=LONG_LEASE_S, timeout=1.0) == []

    def test_rewrite_maps_each_body(self, broker: Broker, queue: str) -> None:
        self.bury(broker, queue, [b"x1", b"x2"])
        assert self.admin(broker).redrive(queue, rewrite=lambda body: body + b"!") == 2
        assert sorted(d.body for d in self.receive(broker, queue, 2)) == [b"x1!", b"x2!"]

    def test_a_redriven_message_dead_letters_again_with_only_the_new_reason(self, broker: Broker, queue: str) -> None:
        self.bury(broker, queue, [b"a"], reason="KeyError: first")
        self.admin(broker).redrive(queue)
        broker.dead_letter(self.receive(broker, queue, 1), "TypeError: second")
        [letter] = self.dead(broker, queue, 1)
        assert (letter.body, letter.reason) == (b"a", "TypeError: second")

    def test_delete_dead_letters_by_id(self, broker: Broker, queue: str) -> None:
        self.bury(broker, queue, [b"a", b"b", b"c"])
        letters = {d.body: d.message_id for d in self.dead(broker, queue, 3)}
        assert self.admin(broker).delete_dead_letters(queue, [letters[b"a"], letters[b"c"]]) == 2
        [left] = self.dead(broker, queue, 1)
        assert left.body == b"b"
        assert receive_until(broker, queue, 1, lease_s=LONG_LEASE_S, timeout=1.0) == []
