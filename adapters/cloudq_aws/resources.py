"""The AWS resources cloudq uses, as data: queue, dead-letter queue, results table, payload bucket.

Creation on first use and ``cloudq deploy`` both build their requests from these functions, so a
resource made either way has the same attributes.
"""

from __future__ import annotations

import json
import re
from typing import Any

# SQS service limits (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html)
SQS_MAX_MESSAGE_BYTES = 1_048_576  # largest MaximumMessageSize; older queues default to 262,144
SQS_MAX_BATCH_ENTRIES = 10  # SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch / Receive
SQS_MAX_BATCH_BYTES = 1_048_576  # sum of the message sizes in one SendMessageBatch
SQS_BILLING_CHUNK_BYTES = 65_536  # each 64 KiB of a request's messages is billed as one request
SQS_MAX_DELAY_S = 900
SQS_MAX_WAIT_S = 20
SQS_MAX_VISIBILITY_S = 43_200  # 12 hours from receipt
SQS_MAX_MESSAGE_ATTRIBUTES = 10
SQS_MAX_RETENTION_S = 1_209_600  # 14 days
SQS_MAX_NAME = 80
FIFO_SUFFIX = ".fifo"
DLQ_SUFFIX = "-dlq"
DEFAULT_MAX_RECEIVE_COUNT = 50  # a safety net only: the executor dead-letters exhausted retries itself

# DynamoDB
DYNAMODB_MAX_ITEM_BYTES = 400 * 1024
RESULTS_KEY = "task_id"
RESULTS_TTL_ATTRIBUTE = "expires_at"
# The index of recent records (TaskIndex.recent) and live workers (HeartbeatStore.alive): one GSI
# on attributes every record write sets anyway, partition = state (workers: WORKER_STATE), sort =
# time of the write. One Query lists a state newest first; nothing is scanned.
INDEX_NAME = "cloudq-recent"
INDEX_PARTITION = "state"
INDEX_SORT = "updated_at"
INDEX_PROJECTED = ("task_name", "expires_exact", "info")  # what a listing shows, and the exact expiry

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def queue_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid SQS queue name, or None."""
    base = name[: -len(FIFO_SUFFIX)] if name.endswith(FIFO_SUFFIX) else name
    if not base or not _QUEUE_NAME.match(base):
        return "SQS queue names may only contain letters, digits, '-' and '_' (plus a '.fifo' suffix)"
    if len(name) > SQS_MAX_NAME - len(DLQ_SUFFIX):
        return f"SQS queue names are limited to {SQS_MAX_NAME} characters, including the {DLQ_SUFFIX!r} of the dead-letter queue"
    return None


def is_fifo(name: str) -> bool:
    return name.endswith(FIFO_SUFFIX)


def dead_letter_queue_name(name: str) -> str:
    """``orders`` -> ``orders-dlq``; ``orders.fifo`` -> ``orders-dlq.fifo`` (a FIFO queue needs a FIFO DLQ)."""
    if is_fifo(name):
        return name[: -len(FIFO_SUFFIX)] + DLQ_SUFFIX + FIFO_SUFFIX
    return name + DLQ_SUFFIX


def dead_letter_queue_attributes(name: str) -> dict[str, str]:
    attributes = {
        "MessageRetentionPeriod": str(SQS_MAX_RETENTION_S),
        "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES),
    }
    if is_fifo(name):
        attributes["FifoQueue"] = "true"
    return attributes


def queue_attributes(
    name: str, visibility_s: float, wait_s: float, dead_letter_arn: str | None, max_receive_count: int
) -> dict[str, str]:
    """Attributes of a work queue: long polling by default, the visibility timeout the worker
    leases with, the largest message size, and a redrive policy onto its dead-letter queue."""
    attributes = {
        "VisibilityTimeout": str(int(min(max(visibility_s, 0), SQS_MAX_VISIBILITY_S))),
        "ReceiveMessageWaitTimeSeconds": str(int(min(max(wait_s, 0), SQS_MAX_WAIT_S))),
        "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES),
        "MessageRetentionPeriod": str(SQS_MAX_RETENTION_S),
    }
    if dead_letter_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(max_receive_count)}
        )
    if is_fifo(name):
        attributes["FifoQueue"] = "true"
        attributes["ContentBasedDeduplication"] = "false"  # cloudq always sends a deduplication id
    return attributes


def results_table_definition(table: str) -> dict[str, Any]:
    """CreateTable arguments for a results table: task id key, on-demand billing, the index."""
    return {
        "TableName": table,
        "KeySchema": [{"AttributeName": RESULTS_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": RESULTS_KEY, "AttributeType": "S"},
            *index_attribute_definitions(),
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "GlobalSecondaryIndexes": [results_index_definition()],
    }


def index_attribute_definitions() -> list[dict[str, str]]:
    return [
        {"AttributeName": INDEX_PARTITION, "AttributeType": "S"},
        {"AttributeName": INDEX_SORT, "AttributeType": "N"},
    ]


def results_index_definition() -> dict[str, Any]:
    """The GSI of recent records by state (an on-demand table's index needs no throughput)."""
    return {
        "IndexName": INDEX_NAME,
        "KeySchema": [
            {"AttributeName": INDEX_PARTITION, "KeyType": "HASH"},
            {"AttributeName": INDEX_SORT, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(INDEX_PROJECTED)},
    }


def add_index_request(table: str) -> dict[str, Any]:
    """UpdateTable arguments adding the index to a table made before it existed."""
    return {
        "TableName": table,
        "AttributeDefinitions": index_attribute_definitions(),
        "GlobalSecondaryIndexUpdates": [{"Create": results_index_definition()}],
    }


def results_ttl_specification(table: str) -> dict[str, Any]:
    """UpdateTimeToLive arguments: DynamoDB deletes expired results (lazily; reads filter them)."""
    return {"TableName": table, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": RESULTS_TTL_ATTRIBUTE}}


def bucket_definition(bucket: str, region: str | None) -> dict[str, Any]:
    """CreateBucket arguments (us-east-1 takes no location constraint)."""
    request: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return request
