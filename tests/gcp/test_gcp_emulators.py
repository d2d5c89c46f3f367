"""The emulator fixtures start real servers that the official clients can reach."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.gcp


def test_pubsub_emulator_serves_the_official_client(pubsub_emulator, unique: str, project: str) -> None:
    from google.cloud import pubsub_v1

    assert os.environ["PUBSUB_EMULATOR_HOST"] == pubsub_emulator.host
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(project, f"probe-{unique}")
    publisher.create_topic(name=topic)
    assert publisher.get_topic(topic=topic).name == topic


def test_firestore_emulator_serves_the_official_client(firestore_emulator, unique: str, project: str) -> None:
    from google.cloud import firestore

    assert os.environ["FIRESTORE_EMULATOR_HOST"] == firestore_emulator.host
    doc = firestore.Client(project=project).collection(f"probe-{unique}").document("d")
    doc.set({"n": 1})
    assert doc.get().to_dict() == {"n": 1}


def test_gcs_emulator_serves_the_official_client(gcs_emulator, unique: str, project: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=project, credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"probe-{unique}")
    bucket.blob("k").upload_from_string(b"v")
    assert bucket.blob("k").download_as_bytes() == b"v"
