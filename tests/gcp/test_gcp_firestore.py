"""FirestoreResultStore on Google's Firestore emulator: behaviour specific to Firestore (the shared
result-store contract runs in test_gcp_contract.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from cloudq_gcp.firestore import FirestoreResultStore
from cloudq_gcp.firestore_records import document_id
from cloudq_gcp.options import FirestoreOptions

from cloudq import App, ResultTimeout, states
from cloudq.backends.common import COUNTER_PREFIX
from cloudq.config import load_settings
from cloudq.errors import BackendUnavailable, ConfigurationError, ResultStoreError, ResultTooLarge
from cloudq.interfaces import ResultRecord
from cloudq.registry import open_results

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60)]


class CountingStore(FirestoreResultStore):
    """Counts document reads: a listener needs one, polling many; a first terminal write none."""

    reads = 0

    def _read(self, ref: Any, deadline: Any = None) -> Any:
        self.reads += 1
        return super()._read(ref, deadline)


def make_store(project: str, unique: str, **overrides: object) -> CountingStore:
    options: dict[str, object] = {"project": project, "collection": f"results-{unique}", "timeout": 10.0}
    options.update(overrides)
    return CountingStore(FirestoreOptions(**options))  # type: ignore[arg-type]


@pytest.fixture
def store(firestore_emulator, project: str, unique: str) -> Iterator[CountingStore]:
    store = make_store(project, unique)
    yield store
    store.close()


def finish_later(store: FirestoreResultStore, task_id: str, after_s: float, result: object = 42) -> threading.Timer:
    timer = threading.Timer(after_s, lambda: store.set(ResultRecord(task_id, states.SUCCESS, "t", result=result)))
    timer.start()
    return timer


@pytest.mark.parametrize("listen", [True, False], ids=["listener", "polling"])
def test_wait_returns_the_terminal_record_when_it_lands(
    firestore_emulator, project: str, unique: str, listen: bool
) -> None:
    store, writer = make_store(project, unique, listen=listen), make_store(project, unique)
    writer.set(ResultRecord("job-1", states.STARTED, "t"))
    timer = finish_later(writer, "job-1", 0.5)
    record = store.wait("job-1", timeout=20)
    timer.join()
    writer.close()
    assert record is not None and (record.state, record.result) == (states.SUCCESS, 42)
    if listen:
        assert store.reads == 1  # one read before listening; the listener pushed the rest
    else:
        assert store.reads > 1
    store.close()


def test_wait_times_out_with_the_latest_record(store: CountingStore) -> None:
    store.set(ResultRecord("slow", states.STARTED, "t"))
    record = store.wait("slow", timeout=0.5)
    assert record is not None and record.state == states.STARTED


def test_async_result_get_uses_the_listener(firestore_emulator, project: str, unique: str) -> None:
    app = App("gcp", broker="memory://", results=f"firestore://results-{unique}?project={project}")
    app.results.set(ResultRecord("r1", states.STARTED, "t"))
    timer = finish_later(app.results, "r1", 0.3, result={"sum": 3})
    assert app.AsyncResult("r1").get(timeout=20) == {"sum": 3}
    timer.join()
    with pytest.raises(ResultTimeout):
        app.AsyncResult("never").get(timeout=0.3)
    app.close()


def test_expiry_is_a_ttl_timestamp_and_expired_reads_absent(store: CountingStore) -> None:
    from google.cloud import firestore

    store.set(ResultRecord("ttl", states.SUCCESS, "t", result=1, expires_at=time.time() + 3600))
    raw = firestore.Client(project=store.options.project).collection(store.options.collection).document("ttl").get()
    assert isinstance(raw.get("expires_at"), datetime)  # what a Firestore TTL policy needs
    store.set(ResultRecord("gone", states.SUCCESS, "t", result=1, expires_at=time.time() - 1))
    assert store.get("gone") is None


def test_task_ids_firestore_cannot_take_round_trip(store: CountingStore) -> None:
    for task_id in ("a/b", "__reserved__", ".", "x" * 2000):
        assert document_id(task_id) != task_id
        assert store.set(ResultRecord(task_id, states.SUCCESS, "t", result=task_id[:10])) is True
        record = store.get(task_id)
        assert record is not None and record.task_id == task_id


def test_oversize_result_without_bucket_is_result_too_large(store: CountingStore) -> None:
    with pytest.raises(ResultTooLarge, match=r"1048576.*\?bucket="):
        store.set(ResultRecord("big", states.SUCCESS, "t", result="x" * 1_100_000))
    assert store.get("big") is None


def test_oversize_result_goes_through_a_bucket(firestore_emulator, gcs_emulator, project: str, unique: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = storage.Client(project=project, credentials=AnonymousCredentials()).create_bucket(f"results-{unique}")
    store = make_store(project, unique, bucket=bucket.name)
    big = {"rows": ["y" * 1000] * 1500}  # ~1.5 MB of JSON
    assert store.set(ResultRecord("big", states.SUCCESS, "t", result=big)) is True
    record = store.get("big")
    assert record is not None and record.result == big
    assert len(list(bucket.list_blobs())) == 1
    store.forget("big")
    assert store.get("big") is None
    assert list(bucket.list_blobs()) == []  # the offloaded result went with it
    store.close()


def test_a_first_terminal_write_reads_nothing_and_a_later_one_reads_once(store: CountingStore) -> None:
    assert store.set(ResultRecord("fresh", states.SUCCESS, "t", result=1)) is True
    assert store.reads == 0  # one create() with its exists=false precondition
    store.set(ResultRecord("started", states.STARTED, "t"))
    store.reads = 0
    assert store.set(ResultRecord("started", states.SUCCESS, "t", result=2)) is True
    assert store.reads == 1  # create() refused, then one read and one conditional update
    assert store.get("started").result == 2  # type: ignore[union-attr]


def test_unreachable_emulator_is_backend_unavailable(
    monkeypatch: pytest.MonkeyPatch, project: str, unique: str
) -> None:
    from cloudq_gcp.testing import free_port

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    store = make_store(project, unique, timeout=1.0)
    with pytest.raises(BackendUnavailable, match="FIRESTORE_EMULATOR_HOST"):
        store.get("x")
    store.close()


def test_from_url_reads_collection_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings({"results_options": {"timeout": 5}}, environ={})
    store = open_results("firestore://runs/app1/results?project=p1&bucket=b&listen=false", settings)
    assert isinstance(store, FirestoreResultStore)
    options = store.options
    assert (options.project, options.collection, options.bucket, options.listen, options.timeout) == (
        "p1",
        "runs/app1/results",
        "b",
        False,
        5.0,
    )
    with pytest.raises(ConfigurationError, match="collection path"):
        FirestoreResultStore.from_url("firestore://runs/app1?project=p", settings)
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigurationError, match="needs a Google Cloud project"):
        FirestoreResultStore.from_url("firestore://results", settings)


def test_get_many_is_one_batch_read_per_100_documents(store: CountingStore) -> None:
    ids = [f"many-{i}" for i in range(250)]
    for i, task_id in enumerate(ids[:20]):
        store.set(ResultRecord(task_id, states.SUCCESS, "t", result=i))
    store.requests.clear()
    assert len(store.get_many(ids[:10])) == 10
    assert dict(store.requests) == {"_batch_get_documents": 1}
    store.requests.clear()
    assert len(store.get_many(ids + ids[:50])) == 20  # repeated ids are read once
    assert dict(store.requests) == {"_batch_get_documents": 3}
    assert store.reads == 0  # no document was read on its own


def test_increment_is_one_write_and_a_counter_has_a_ttl_timestamp(store: CountingStore) -> None:
    from google.cloud import firestore

    store.requests.clear()
    assert store.increment("chord-1", expires_at=time.time() + 3600) == 1
    assert dict(store.requests) == {"set": 1}  # the new total comes back in the commit response
    raw = firestore.Client(project=store.options.project).collection(store.options.collection)
    fields = raw.document(document_id(COUNTER_PREFIX + "chord-1")).get().to_dict()
    assert (fields["kind"], fields["count"], isinstance(fields["expires_at"], datetime)) == ("counter", 1, True)
    store.requests.clear()
    assert store.increment("chord-1", 2, expires_at=time.time() + 7200) == 3
    assert dict(store.requests) == {"set": 1}
    later = raw.document(document_id(COUNTER_PREFIX + "chord-1")).get().to_dict()
    assert later["expires_exact"] == fields["expires_exact"]  # the earliest expiry given stays


def test_an_expired_counter_is_replaced_in_a_second_request(store: CountingStore) -> None:
    store.increment("old", 7, expires_at=time.time() - 1)
    store.requests.clear()
    assert store.increment("old", expires_at=time.time() + 60) == 1
    assert dict(store.requests) == {"set": 1, "update": 1}


def test_task_ids_in_the_counter_namespace_are_refused(store: CountingStore) -> None:
    with pytest.raises(ResultStoreError, match="reserved for counters"):
        store.set(ResultRecord(COUNTER_PREFIX + "x", states.SUCCESS, "t"))
    with pytest.raises(ResultStoreError, match="reserved for counters"):
        store.claim(COUNTER_PREFIX + "x", "w", time.time() + 60)


def test_oversize_extended_args_go_through_a_bucket(
    firestore_emulator, gcs_emulator, project: str, unique: str
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = storage.Client(project=project, credentials=AnonymousCredentials()).create_bucket(f"calls-{unique}")
    store = make_store(project, unique, bucket=bucket.name)
    args, kwargs = [["z" * 1000] * 1200], {"flag": True}  # ~1.2 MB of JSON arguments
    record = ResultRecord("call", states.SUCCESS, "t", result=[1], args=args, kwargs=kwargs, queue="q", worker="w")
    assert store.set(record) is True
    got = store.get("call")
    assert got is not None and (got.args, got.kwargs, got.queue, got.worker, got.result) == (
        args,
        kwargs,
        "q",
        "w",
        [1],
    )
    assert len(list(bucket.list_blobs())) == 1  # the call only: the small result stays in the document
    store.forget("call")
    assert list(bucket.list_blobs()) == []
    store.close()
