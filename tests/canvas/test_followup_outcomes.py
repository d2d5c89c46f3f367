"""Follow-ups are part of the outcome: they cross the process pool's pipe and settle before acks."""

from __future__ import annotations

from cloudq.interfaces import Delivery, OutgoingMessage
from cloudq.runtime.child import decode_outcome, encode_outcome
from cloudq.runtime.executor import Ack, DeadLetter
from cloudq.runtime.settle import settle

NEXT = OutgoingMessage(b'{"v":1,"id":"n1","task":"canvas.add"}', 2.5, "k", "n1", {"task": "canvas.add"})


def test_follow_ups_cross_the_pool_pipe_unchanged() -> None:
    for outcome in (Ack(followups=(("q1", NEXT),), step="s1"), DeadLetter("why", (("q2", NEXT),)), Ack()):
        assert decode_outcome(encode_outcome(outcome)) == outcome


def test_settle_groups_follow_ups_by_queue_and_sends_one_per_task_id() -> None:
    one, two, three = (Delivery(b"x", i, 1, "default") for i in range(3))
    plan = settle(
        [
            (one, Ack(followups=(("q1", NEXT),), step="s1")),
            (two, Ack(followups=(("q1", NEXT),), step="s1")),  # a duplicate of the same step
            (three, DeadLetter("failed", (("q2", NEXT),))),
        ]
    )
    assert [d for d, _ in plan.followups["q1"]] == [one] and [d for d, _ in plan.followups["q2"]] == [three]
    assert plan.steps == {id(one): "s1", id(two): "s1"}
    plan.drop([one, three])
    assert plan.acks == [two] and plan.dead == {}
