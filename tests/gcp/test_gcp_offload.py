"""Claim-checks in Cloud Storage, against gcp-storage-emulator with the official client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cloudq_gcp.gcs import ClaimCheckMissing, GCSOffload
from cloudq_gcp.options import PubSubOptions
from cloudq_gcp.pubsub import CLAIM, PUBSUB_MAX_BODY_BYTES, PubSubBroker

from cloudq.claimcheck import BucketMissing
from cloudq.errors import ConfigurationError
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


def bucket_exists(name: str, project: str) -> bool:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=project, credentials=AnonymousCredentials())
    try:
        return client.lookup_bucket(name) is not None
    finally:
        client.close()


def test_a_missing_bucket_is_created_once_on_first_use_under_create_missing(
    gcs_emulator, project: str, unique: str
) -> None:
    name = f"cloudq-new-{unique}"
    offload = GCSOffload(name, "p/", project, create_missing=True)
    first, second = offload.put(b"first"), offload.put(b"second")
    assert bucket_exists(name, project)
    assert [offload.get(first), offload.get(second)] == [b"first", b"second"]
    offload.close()


def test_without_create_missing_a_missing_bucket_is_a_configuration_error_naming_the_fix(
    gcs_emulator, project: str, unique: str
) -> None:
    name = f"cloudq-none-{unique}"
    offload = GCSOffload(name, "p/", project)  # create_missing is off unless the backend's options turn it on
    with pytest.raises(BucketMissing, match="cloudq deploy") as info:
        offload.put(b"payload")
    assert isinstance(info.value, ConfigurationError)
    assert not bucket_exists(name, project)
    offload.close()


def test_the_backends_pass_their_create_missing_option_to_the_bucket_rule(project: str) -> None:
    from cloudq_gcp.firestore import FirestoreResultStore
    from cloudq_gcp.options import FirestoreOptions

    for create_missing in (True, False):
        broker = PubSubBroker(PubSubOptions(project, bucket="b", create_missing=create_missing))
        store = FirestoreResultStore(FirestoreOptions(project, "results", bucket="b", create_missing=create_missing))
        assert broker.offload is not None and store.offload is not None
        assert broker.offload.checks.create_missing is create_missing
        assert store.offload.checks.create_missing is create_missing
        broker.close()
        store.close()
