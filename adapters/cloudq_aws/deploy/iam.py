"""The app's IAM role: who may assume it, and the least privilege cloudq's runtimes need.

Only the actions the adapters call (sqs.py, dynamodb.py, s3.py, the Lambda service's
own polling), only on this app's ARNs: its queues and dead-letter queues, its results table, the
object prefixes its payloads use, the log groups of its functions. No statement names ``*``.
Creation on first use is off for deployed runtimes, so no Create* action is granted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

POLICY_VERSION = "2012-10-17"
POLICY_NAME = "cloudq"
ROLE_PATH = "/cloudq/"

# SendMessage, DeleteMessage and ChangeMessageVisibility also cover their *Batch forms
QUEUE_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
)
# BatchGetItem: group results, revocation checks (get_many); UpdateItem: claims and counters (increment)
RESULT_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
# Query: listing recent tasks and live workers (TaskIndex, HeartbeatStore.alive), on the index only
INDEX_ACTIONS = ("dynamodb:Query",)
PAYLOAD_ACTIONS = ("s3:DeleteObject", "s3:GetObject", "s3:PutObject")
LOG_STREAM_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
SCHEDULER_ACTIONS = ("sqs:SendMessage",)  # all EventBridge Scheduler does with the role: send each run
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
CONTAINER_PRINCIPAL = "ecs-tasks.amazonaws.com"


@dataclass(frozen=True, slots=True)
class Arns:
    """ARNs of one account and region. With ``Arns.cloudformation()`` the parts are CloudFormation
    pseudo parameters, so the same strings work inside ``Fn::Sub``."""

    partition: str
    region: str
    account: str

    @classmethod
    def cloudformation(cls) -> Arns:
        return cls("${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}")

    def queue(self, name: str) -> str:
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{name}"

    def table(self, name: str) -> str:
        return f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/{name}"

    def index(self, table: str, index: str) -> str:
        return f"{self.table(table)}/index/{index}"

    def objects(self, bucket: str, prefix: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}/{prefix}*"

    def role(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role{ROLE_PATH}{name}"

    def function(self, name: str) -> str:
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{name}"

    def log_group(self, function: str) -> str:
        return f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:/aws/lambda/{function}"


def trust_policy(principals: Sequence[str]) -> dict[str, Any]:
    return {
        "Version": POLICY_VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": sorted(principals)}, "Action": ["sts:AssumeRole"]}],
    }


def _statement(sid: str, actions: Sequence[str], resources: Sequence[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def access_policy(
    queue_arns: Sequence[Any],
    table_arn: Any | None,
    object_arns: Sequence[Any],
    log_stream_arns: Sequence[Any],
    index_arn: Any | None = None,
) -> dict[str, Any]:
    """The inline policy; ARNs may be strings or CloudFormation intrinsics. Deploy creates each
    function's log group (with its retention), so the role only writes streams into it."""
    statements = [_statement("CloudqQueues", QUEUE_ACTIONS, queue_arns)]
    if table_arn is not None:
        statements.append(_statement("CloudqResults", RESULT_ACTIONS, [table_arn]))
    if index_arn is not None:
        statements.append(_statement("CloudqTaskIndex", INDEX_ACTIONS, [index_arn]))
    if object_arns:
        statements.append(_statement("CloudqPayloads", PAYLOAD_ACTIONS, object_arns))
    if log_stream_arns:
        statements.append(_statement("CloudqLogStreams", LOG_STREAM_ACTIONS, log_stream_arns))
    return {"Version": POLICY_VERSION, "Statement": statements}


def scheduler_policy(queue_arns: Sequence[Any]) -> dict[str, Any]:
    """The schedules' role: send messages to the queues periodic tasks run on, nothing else."""
    return {"Version": POLICY_VERSION, "Statement": [_statement("CloudqScheduledRuns", SCHEDULER_ACTIONS, queue_arns)]}
