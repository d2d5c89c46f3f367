"""Claim-check trust on Pub/Sub (issue 10): a ``cloudq-claim`` pointer is only read, and its object
only deleted, inside the broker's own bucket and prefix. Anyone who can publish could otherwise
make a worker read any object of the bucket as a task body (a stored result, another app's
message) and delete it on ack or purge."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cloudq_gcp.gcs import ForeignClaimCheck, GCSOffload
from cloudq_gcp.options import PubSubOptions
from cloudq_gcp.pubsub import PubSubBroker
from cloudq_gcp.pubsub_admin import queue_paths
from cloudq_gcp.pubsub_messages import CLAIM
from test_gcp_offload import bucket, objects
from test_gcp_poison import publish_raw

from cloudq.interfaces import Delivery

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(90)]
__all__ = ["bucket"]  # the fixture, used by name

SECRET = b'{"result": "a stored result, not a task"}'


@pytest.fixture
def broker(pubsub_emulator, bucket: str, project: str, unique: str) -> Iterator[PubSubBroker]:
    broker = PubSubBroker(PubSubOptions(project, prefix=f"t{unique}-", ack_deadline=10, bucket=bucket, timeout=30))
    yield broker
    broker.close()


def receive(broker: PubSubBroker, queue: str, expect: int) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + 20
    while len(got) < expect and time.monotonic() < deadline:
        got += broker.receive(queue, 10, 30, wait_s=2)
    return got


def test_pointers_outside_the_brokers_bucket_and_prefix_are_malformed_and_never_deleted(
    broker: PubSubBroker, bucket: str, project: str
) -> None:
    results = GCSOffload(bucket, "cloudq-results/results/", project)  # as a Firestore store with this bucket
    secret = results.put(SECRET)
    other_app = GCSOffload(bucket, "other-messages/", project).put(b"another app's message")
    assert broker.offload is not None
    own = broker.offload.prefix
    forged = {
        "stored-result": secret,
        "other-prefix": other_app,
        "prefix-itself": f"gs://{bucket}/{own}",
        "other-bucket": f"gs://not-{bucket}/{own}x",
        "prefix-lookalike": f"gs://{bucket}/{own.rstrip('/')}-x/y",
    }
    broker.stats("q")  # creates the topic and subscriptions
    topic = queue_paths(broker.options, "q").topic
    publish_raw(topic, [(name.encode(), {CLAIM: ref}) for name, ref in forged.items()])

    got = receive(broker, "q", len(forged))
    assert sorted(d.body.decode() for d in got) == sorted(forged)  # the message's own data, never the object
    for delivery in got:
        ref = forged[delivery.body.decode()]
        assert delivery.malformed == (
            f"ForeignClaimCheck: claim-check {ref!r} does not point into gs://{bucket}/{own}"
        ), delivery.body
    broker.dead_letter(got, "MalformedMessage: forged")
    broker.ack(got)  # a second settle of the same receipts: nothing of theirs to delete either

    publish_raw(topic, [(b"to purge", {CLAIM: secret})])
    assert broker.purge("q") == 1
    assert sorted(objects(bucket, project)) == sorted(r.removeprefix(f"gs://{bucket}/") for r in (secret, other_app))
    assert results.get(secret) == SECRET
    letters = broker.dead_letters("q")
    assert sorted(letter.body.decode() for letter in letters) == sorted(forged)
    results.close()


def test_the_offload_refuses_foreign_pointers_itself(bucket: str, project: str) -> None:
    offload = GCSOffload(bucket, "mine/", project)
    stranger = GCSOffload(bucket, "theirs/", project).put(SECRET)
    with pytest.raises(ForeignClaimCheck, match=f"does not point into gs://{bucket}/mine/"):
        offload.get(stranger)
    with pytest.raises(ForeignClaimCheck):
        offload.delete(stranger)
    assert objects(bucket, project) == [stranger.removeprefix(f"gs://{bucket}/")]
    offload.close()
