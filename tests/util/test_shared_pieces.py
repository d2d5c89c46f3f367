"""The cross-provider pieces every adapter uses: claim checks, settlement, chunks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cloudq.claimcheck import (
    ClaimCheckMissing,
    ClaimChecks,
    ClaimCheckStore,
    ForeignClaimCheck,
    ObjectStore,
    Pointer,
    parse_pointer,
)
from cloudq.interfaces import Delivery, OutgoingMessage
from cloudq.runtime.executor import Ack, DeadLetter, Requeue, RetryIn
from cloudq.runtime.settle import settle
from cloudq.util.chunks import chunks


class Objects:
    """An in-memory ObjectStore that records every request."""

    scheme = "s3"

    def __init__(self, bucket: str = "b") -> None:
        self.bucket = bucket
        self.data: dict[str, bytes] = {}
        self.requests: list[str] = []

    def put_object(self, key: str, data: bytes, content_type: str, timeout: float | None) -> None:
        self.requests.append(f"put {key}")
        self.data[key] = data

    def get_object(self, key: str) -> bytes:
        self.requests.append(f"get {key}")
        if key not in self.data:
            raise ClaimCheckMissing(key)
        return self.data[key]

    def delete_objects(self, keys: Sequence[str]) -> None:
        self.requests.append(f"delete {','.join(keys)}")
        for key in keys:
            self.data.pop(key, None)

    def close(self) -> None:
        pass


def test_put_get_delete_round_trip_inside_the_prefix_and_folder():
    objects = Objects()
    store = ClaimChecks(objects, "app/cloudq/")
    assert isinstance(objects, ObjectStore) and isinstance(store, ClaimCheckStore)
    pointer = store.put(b"payload", "task-1")
    assert str(pointer).startswith("s3://b/app/cloudq/task-1/")
    assert store.parse(str(pointer)) == pointer
    assert store.get(pointer, "task-1") == b"payload"
    assert store.delete([pointer], "task-1") == []
    with pytest.raises(ClaimCheckMissing):
        store.get(pointer)


@pytest.mark.parametrize(
    "pointer",
    [
        Pointer("s3", "other", "app/cloudq/x"),  # another bucket
        Pointer("s3", "b", "app/results/x"),  # outside the prefix
        Pointer("s3", "b", "app/cloudq/"),  # the bare prefix
        Pointer("s3", "b", "app/cloudqx/y"),  # a lookalike prefix
        Pointer("gs", "b", "app/cloudq/x"),  # another scheme
        Pointer("s3", "b", "app/cloudq/task-2/x"),  # another task's folder (checked with folder task-1)
    ],
)
def test_a_foreign_pointer_is_never_requested(pointer):
    objects = Objects()
    store = ClaimChecks(objects, "app/cloudq/")
    folder = "task-1" if "task-2" in pointer.key else ""
    with pytest.raises(ForeignClaimCheck):
        store.get(pointer, folder)
    assert store.delete([pointer], folder) == [pointer]
    assert objects.requests == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://b/k/1", Pointer("s3", "b", "k/1")),
        ('{"cloudq_claim_check":{"bucket":"b","key":"k/1","size":3}}', Pointer("s3", "b", "k/1")),
    ],
)
def test_pointers_parse_in_the_url_and_the_legacy_json_form(text, expected):
    assert parse_pointer(text, "s3") == expected


@pytest.mark.parametrize("text", ["", "s3://", "s3://b", "s3:///k", "gs://b/k", "{}", '{"cloudq_claim_check": 1}', "x"])
def test_anything_else_is_a_foreign_claim_check(text):
    with pytest.raises(ForeignClaimCheck):
        parse_pointer(text, "s3")


def _delivery(n: int, queue: str = "q") -> Delivery:
    return Delivery(b"", n, 1, queue, message_id=str(n))


def test_settle_partitions_outcomes_keeping_order():
    d = [_delivery(i, "q" if i < 5 else "r") for i in range(7)]
    message = OutgoingMessage(b"copy")
    settled = settle(
        [
            (d[0], Ack()),
            (d[1], RetryIn(5.0)),
            (d[2], RetryIn(5.0)),
            (d[3], DeadLetter("bad")),
            (d[4], Requeue(message)),
            (d[5], Requeue(message)),
            (d[6], Ack()),
        ]
    )
    assert settled.acks == [d[0], d[6]]
    assert settled.nacks == {5.0: [d[1], d[2]]}
    assert settled.dead == {"bad": [d[3]]}
    assert settled.sends == {"q": [(d[4], message)], "r": [(d[5], message)]}
    assert len(settled) == 7
    with pytest.raises(TypeError):
        settle([(d[0], object())])  # type: ignore[list-item]


def test_chunks():
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunks([], 10) == []
    assert chunks([1, 2], 0) == [[1], [2]]
