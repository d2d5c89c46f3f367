"""DynamoDBResultStore: the result-store contract plus DynamoDB specifics, on a moto server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cloudq_aws.dynamodb import DynamoDBResultStore
from cloudq_aws.errors import TableNotFound
from cloudq_aws.testing import MotoServer

from cloudq import states
from cloudq.backends.common import COUNTER_PREFIX
from cloudq.config import Settings
from cloudq.errors import ConfigurationError, ResultStoreError, ResultTooLarge
from cloudq.interfaces import ResultRecord
from cloudq.testing.result_contract import ResultStoreContract, new_task_id

pytestmark = [pytest.mark.aws]


def make_store(prefix: str, query: str = "", **settings: object) -> DynamoDBResultStore:
    return DynamoDBResultStore.from_url(f"dynamodb://{prefix}results{query}", Settings(**settings))  # type: ignore[arg-type]


class TestDynamoDB(ResultStoreContract):
    @pytest.fixture
    def store(self, prefix: str) -> Iterator[DynamoDBResultStore]:
        store = make_store(prefix)
        yield store
        store.close()

    @pytest.fixture
    def offloading_store(self, prefix: str, bucket: str) -> Iterator[DynamoDBResultStore]:
        store = make_store(prefix, f"?bucket={bucket}")
        yield store
        store.close()


@pytest.fixture
def store(prefix: str) -> Iterator[DynamoDBResultStore]:
    s = make_store(prefix)
    yield s
    s.close()


def test_table_is_created_on_first_use_with_ttl_and_on_demand_billing(store: DynamoDBResultStore) -> None:
    assert store.get(new_task_id()) is None
    db = store.clients.get("dynamodb")
    table = db.describe_table(TableName=store.table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = db.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_ttl_attribute_is_whole_epoch_seconds(store: DynamoDBResultStore) -> None:
    task_id = new_task_id()
    store.set(ResultRecord(task_id, states.SUCCESS, result=1, expires_at=1_900_000_000.25))
    item = store.clients.get("dynamodb").get_item(TableName=store.table, Key={"task_id": {"S": task_id}})["Item"]
    assert item["expires_at"] == {"N": "1900000001"}
    assert store.get(task_id).expires_at == 1_900_000_000.25  # type: ignore[union-attr]


def test_one_conditional_request_per_write_and_consistent_reads(store: DynamoDBResultStore, aws: MotoServer) -> None:
    task_id = new_task_id()
    store.get(task_id)  # creates the table
    with aws.count_requests() as calls:
        assert store.set(ResultRecord(task_id, states.SUCCESS, result=1)) is True
        assert store.set(ResultRecord(task_id, states.SUCCESS, result=2)) is False
        assert store.claim(task_id, "w", time.time() + 5).acquired is False
        assert store.get(task_id).result == 1  # type: ignore[union-attr]
    assert calls.of("dynamodb") == {"PutItem": 2, "UpdateItem": 1, "GetItem": 1}


def test_claim_of_an_expired_record_replaces_it(store: DynamoDBResultStore) -> None:
    task_id = new_task_id()
    store.set(ResultRecord(task_id, states.SUCCESS, result=1, expires_at=time.time() - 5))  # moto never deletes it
    assert store.claim(task_id, "w", time.time() + 60, "t").acquired is True
    got = store.get(task_id)
    assert got is not None and (got.state, got.claim_owner, got.expires_at, got.result) == (
        states.STARTED,
        "w",
        None,
        None,
    )


def test_large_result_goes_to_s3_and_back(prefix: str, bucket: str) -> None:
    store = make_store(prefix, f"?bucket={bucket}")
    task_id = new_task_id()
    result = {"blob": "x" * 600_000, "n": [1, 2.5]}
    assert store.set(ResultRecord(task_id, states.SUCCESS, "t", result=result)) is True
    assert store.get(task_id).result == result  # type: ignore[union-attr]
    s3 = store.clients.get("s3")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert store.set(ResultRecord(task_id, states.SUCCESS, "t", result=result)) is False  # late duplicate
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1  # its upload was removed again
    store.forget(task_id)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_large_extended_args_go_to_s3_the_larger_first_and_go_with_the_record(prefix: str, bucket: str) -> None:
    store = make_store(prefix, f"?bucket={bucket}")
    s3 = store.clients.get("s3")
    task_id = new_task_id()
    args, kwargs = ["a" * 370_000, [1, 2.5]], {"page": "p" * 50_000}  # 420 kB of call: over the 400 KB item
    small = ResultRecord(
        task_id, states.SUCCESS, "t", result={"ok": 1}, args=args, kwargs=kwargs, queue="q", worker="w"
    )
    assert store.set(small) is True  # only the call moves: the result stays in the item
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    got = store.get(task_id)
    assert got is not None and (got.args, got.kwargs, got.queue, got.worker, got.result) == (
        args,
        kwargs,
        "q",
        "w",
        {"ok": 1},
    )
    both = new_task_id()
    big = {"blob": "r" * 410_000}
    assert store.set(ResultRecord(both, states.SUCCESS, "t", result=big, args=args, kwargs=kwargs)) is True
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 3  # each too large with the other: both moved
    record = store.get(both)
    assert record is not None and (record.result, record.args) == (big, args)
    store.forget(task_id)
    store.forget(both)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_large_extended_args_without_bucket_are_result_too_large(store: DynamoDBResultStore) -> None:
    with pytest.raises(ResultTooLarge, match=r"extended result \(args and kwargs\).*bucket"):
        store.set(ResultRecord(new_task_id(), states.SUCCESS, result=1, args=["x" * 500_000]))


def test_large_result_without_bucket_is_result_too_large(store: DynamoDBResultStore) -> None:
    with pytest.raises(ResultTooLarge, match="bucket"):
        store.set(ResultRecord(new_task_id(), states.SUCCESS, result="x" * 500_000))


def test_huge_traceback_is_cut_so_the_failure_is_still_recorded(store: DynamoDBResultStore) -> None:
    task_id = new_task_id()
    trace = "frame\n" * 100_000 + "ValueError: the end"
    assert store.set(ResultRecord(task_id, states.FAILURE, error_type="ValueError", traceback=trace)) is True
    got = store.get(task_id)
    assert got is not None and got.traceback is not None
    assert got.traceback.endswith("ValueError: the end") and "cut to fit" in got.traceback


def test_missing_table_without_create_missing_names_deploy(prefix: str) -> None:
    store = make_store(prefix, "?create_missing=false")
    with pytest.raises(TableNotFound, match="cloudq deploy"):
        store.get("x")


def test_url_must_name_a_valid_table() -> None:
    with pytest.raises(ConfigurationError, match="names no table"):
        DynamoDBResultStore.from_url("dynamodb://", Settings())
    with pytest.raises(ConfigurationError, match="not valid"):
        DynamoDBResultStore.from_url("dynamodb://a", Settings())
    with pytest.raises(ConfigurationError, match="unknown option"):
        DynamoDBResultStore.from_url("dynamodb://table?prefix=x", Settings())


def test_get_many_is_one_batch_get_item_per_100_ids(store: DynamoDBResultStore, aws: MotoServer) -> None:
    ids = [new_task_id() for _ in range(250)]
    for i, task_id in enumerate(ids[:20]):
        store.set(ResultRecord(task_id, states.SUCCESS, "t", result=i))
    with aws.count_requests() as ten:
        assert len(store.get_many(ids[:10])) == 10
    with aws.count_requests() as all_ids:
        assert len(store.get_many(ids + ids[:50])) == 20  # repeated ids are asked once
    assert ten.of("dynamodb") == {"BatchGetItem": 1}
    assert all_ids.of("dynamodb") == {"BatchGetItem": 3}


def test_get_many_reads_each_offloaded_result_once(prefix: str, bucket: str, aws: MotoServer) -> None:
    store = make_store(prefix, f"?bucket={bucket}")
    big, small = new_task_id(), new_task_id()
    store.set(ResultRecord(big, states.SUCCESS, "t", result="x" * 500_000))
    store.set(ResultRecord(small, states.SUCCESS, "t", result=1))
    with aws.count_requests() as calls:
        got = store.get_many([big, small])
    assert (len(got[big].result), got[small].result) == (500_000, 1)
    assert (calls.of("dynamodb"), calls.of("s3")) == ({"BatchGetItem": 1}, {"GET": 1})
    store.close()


def test_get_many_asks_again_for_unprocessed_keys(store: DynamoDBResultStore, aws: MotoServer) -> None:
    """DynamoDB answers at most 16 MB per BatchGetItem and returns the rest as UnprocessedKeys."""
    ids = [new_task_id() for _ in range(45)]
    for task_id in ids:  # 45 items of ~380 KB: about 17 MB
        store.set(ResultRecord(task_id, states.SUCCESS, "t", result="y" * 380_000))
    with aws.count_requests() as calls:
        got = store.get_many(ids)
    assert sorted(got) == sorted(ids)
    assert calls.of("dynamodb") == {"BatchGetItem": 2}


def test_increment_is_one_update_item_with_the_ttl_attribute(store: DynamoDBResultStore, aws: MotoServer) -> None:
    store.get(new_task_id())  # creates the table
    with aws.count_requests() as calls:
        assert store.increment("chord-1", expires_at=1_900_000_000.25) == 1
    assert calls.of("dynamodb") == {"UpdateItem": 1}
    key = {"task_id": {"S": COUNTER_PREFIX + "chord-1"}}
    item = store.clients.get("dynamodb").get_item(TableName=store.table, Key=key)["Item"]
    assert (item["kind"], item["count"], item["expires_at"]) == ({"S": "counter"}, {"N": "1"}, {"N": "1900000001"})
    assert store.increment("chord-1", 2, expires_at=2_000_000_000) == 3
    item = store.clients.get("dynamodb").get_item(TableName=store.table, Key=key)["Item"]
    assert item["expires_at"] == {"N": "1900000001"}  # the expiry given first stays


def test_an_expired_counter_is_replaced_in_a_second_request(store: DynamoDBResultStore, aws: MotoServer) -> None:
    store.increment("old", 7, expires_at=time.time() - 5)  # moto never deletes it
    with aws.count_requests() as calls:
        assert store.increment("old", expires_at=time.time() + 60) == 1
    assert calls.of("dynamodb") == {"UpdateItem": 1, "PutItem": 1}


def test_counters_never_touch_task_records(store: DynamoDBResultStore) -> None:
    with pytest.raises(ResultStoreError, match="reserved for counters"):
        store.set(ResultRecord(COUNTER_PREFIX + "x", states.SUCCESS, "t"))
    with pytest.raises(ResultStoreError, match="reserved for counters"):
        store.claim(COUNTER_PREFIX + "x", "w", time.time() + 60)
    store.get(new_task_id())  # creates the table
    forged = {"task_id": {"S": COUNTER_PREFIX + "forged"}, "state": {"S": states.SUCCESS}}
    store.clients.get("dynamodb").put_item(TableName=store.table, Item=forged)  # a record written by someone else
    with pytest.raises(ResultStoreError, match="not a counter"):
        store.increment("forged")
    with pytest.raises(ResultStoreError, match="not a counter"):
        store.delete_counter("forged")
