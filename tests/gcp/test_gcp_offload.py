"""Claim-checks in Cloud Storage, against gcp-storage-emulator with the official client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cloudq_gcp.gcs import ClaimCheckMissing, GCSOffload
from cloudq_gcp.options import PubSubOptions
from cloudq_gcp.pubsub import CLAIM, PUBSUB_MAX_BODY_BYTES, PubSubBroker

from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(90)]


@pytest.fixture
def bucket(gcs_emulator, project: str, unique: str) -> Iterator[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=project, credentials=AnonymousCredentials())
    name = f"cloudq-{unique}"
    client.create_bucket(name)
    yield name
    client.close()


def objects(bucket: str, project: str) -> list[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=project, credentials=AnonymousCredentials())
    return [blob.name for blob in client.list_blobs(bucket)]


def test_offload_round_trip_and_missing_object(bucket: str, project: str) -> None:
    offload = GCSOffload(bucket, "p/", project)
    ref = offload.put(b"payload")
    assert ref.startswith(f"gs://{bucket}/p/")
    assert offload.get(ref) == b"payload"
    offload.delete(ref)
    offload.delete(ref)  # already gone: fine
    with pytest.raises(ClaimCheckMissing, match="is gone"):
        offload.get(ref)
    offload.close()


def test_large_message_goes_through_a_bucket(pubsub_emulator, bucket: str, project: str, unique: str) -> None:
    broker = PubSubBroker(PubSubOptions(project, prefix=f"t{unique}-", ack_deadline=10, bucket=bucket, timeout=30))
    big = bytes(range(256)) * ((PUBSUB_MAX_BODY_BYTES + 1_000_000) // 256)
    broker.send("big", [OutgoingMessage(big, attributes={"task": "t"}), OutgoingMessage(b"small")])
    assert len(objects(bucket, project)) == 1  # only the large one was offloaded
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        got += broker.receive("big", 10, 30, wait_s=2)
    bodies = sorted((d.body for d in got), key=len)
    assert bodies == [b"small", big]
    assert all(CLAIM not in d.attributes for d in got)
    broker.ack(got)
    assert objects(bucket, project) == []  # deleted with its message
    broker.close()
