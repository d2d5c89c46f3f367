"""Offloaded-result trust on DynamoDB (issue 10): a result item's S3 pointer is only read, and its
object only deleted, inside the store's own bucket, prefix and task folder. Items are forged with
plain boto3, as anyone with write access to the table could."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudq_aws import resources as res
from cloudq_aws.dynamodb import RESULT_REF, DynamoDBResultStore
from cloudq_aws.s3 import pointer_text
from cloudq_aws.testing import MotoServer
from test_dynamodb_results import make_store

from cloudq import states
from cloudq.claimcheck import Pointer
from cloudq.errors import ResultStoreError
from cloudq.interfaces import ResultRecord
from cloudq.testing.result_contract import new_task_id

pytestmark = [pytest.mark.aws]

SECRET = b'"someone else\'s object"'


def forge(store: DynamoDBResultStore, task_id: str, ref: Pointer) -> None:
    """A STARTED item (so a terminal write replaces it) whose result pointer names ``ref``."""
    item: dict[str, Any] = {
        res.RESULTS_KEY: {"S": task_id},
        "state": {"S": states.STARTED},
        "task_name": {"S": "t"},
        "attempts": {"N": "0"},
        RESULT_REF: {"S": pointer_text(ref, len(SECRET))},
    }
    store.clients.get("dynamodb").put_item(TableName=store.table, Item=item)


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_pointers_outside_the_stores_bucket_prefix_and_task_are_errors_and_never_read_or_deleted(
    aws: MotoServer, prefix: str, bucket: str
) -> None:
    store = make_store(prefix, f"?bucket={bucket}")
    other = make_store(prefix + "x", f"?bucket={bucket}")
    s3 = store.clients.get("s3")
    victim = f"{bucket}-victim"
    s3.create_bucket(Bucket=victim)
    s3.put_object(Bucket=victim, Key=f"cloudq-results/{store.table}/a/secret", Body=SECRET)
    big = {"blob": "x" * 500_000}
    owner = new_task_id()
    assert store.set(ResultRecord(owner, states.SUCCESS, "t", result=big))  # a real offloaded result
    other_task = new_task_id()
    assert other.set(ResultRecord(other_task, states.SUCCESS, "t", result=big))  # another table's
    [own_key] = [k for k in keys(s3, bucket) if f"/{owner}/" in k]
    [other_key] = [k for k in keys(s3, bucket) if f"/{other_task}/" in k]
    before = {victim: keys(s3, victim), bucket: keys(s3, bucket)}

    forged = {
        "other bucket": Pointer("s3", victim, f"cloudq-results/{store.table}/a/secret"),
        "another task's result": Pointer("s3", bucket, own_key),
        "another table's result": Pointer("s3", bucket, other_key),
        "outside the prefix": Pointer("s3", bucket, "elsewhere/secret"),
    }
    for case, ref in forged.items():
        task_id = new_task_id()
        forge(store, task_id, ref)
        with aws.count_requests() as counts, pytest.raises(ResultStoreError) as raised:
            store.get(task_id)
        assert str(raised.value) == (
            f"result record of task {task_id} in {store.table} points to {ref}, outside this store's "
            f"s3://{bucket}/cloudq-results/{store.table}/{task_id}/: not read (a forged or foreign record)"
        ), case
        assert counts.service("s3") == 0, case  # never fetched
        assert store.set(ResultRecord(task_id, states.FAILURE, "t", error_type="E")) is True  # replaces it
        forge(store, task_id, ref)
        store.forget(task_id)  # neither replacing nor forgetting deletes the object the pointer names

    assert {victim: keys(s3, victim), bucket: keys(s3, bucket)} == before
    assert store.get(owner).result == big  # type: ignore[union-attr]
    store.close()
    other.close()


def test_a_store_without_a_bucket_never_follows_a_pointer(aws: MotoServer, prefix: str, bucket: str) -> None:
    store = make_store(prefix)
    s3 = store.clients.get("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="secret", Body=SECRET)
    task_id = new_task_id()
    store.get(task_id)  # creates the table
    forge(store, task_id, Pointer("s3", bucket, "secret"))
    with aws.count_requests() as counts, pytest.raises(ResultStoreError, match=r"has no bucket to read it from"):
        store.get(task_id)
    assert counts.service("s3") == 0
    store.forget(task_id)
    assert json.loads(s3.get_object(Bucket=bucket, Key="secret")["Body"].read()) == json.loads(SECRET)
    store.close()
