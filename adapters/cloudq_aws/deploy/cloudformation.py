"""``cloudq deploy --emit cloudformation``: the same resources as a CloudFormation template.

Built from the same layout and attribute builders as the API deploy, with ARNs as CloudFormation
references (``Fn::GetAtt`` / ``Fn::Sub``) so the template is not tied to one account or region.
The function code is a parameter: upload the archive cloudq writes and pass its bucket and key.
What holds data that must outlive the stack (the results table, the dead-letter queues) is
retained when the stack is deleted or the resource replaced.
"""

from __future__ import annotations

import re
from typing import Any

from .. import resources as res
from . import iam, packaging, yaml_text
from .layout import BUILD_DIR, AWSLayout, QueueLayout

TEMPLATE_VERSION = "2010-09-09"
_INTEGER_ATTRIBUTES = {
    "VisibilityTimeout",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
}
_BOOLEAN_ATTRIBUTES = {"FifoQueue", "ContentBasedDeduplication"}
# deleting the stack (or replacing the resource) keeps it: results and dead letters are data
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}


def logical_id(kind: str, name: str) -> str:
    """``Queue`` + ``orders-dlq.fifo`` -> ``QueueOrdersDlqFifo`` (CloudFormation ids are alphanumeric)."""
    return kind + "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _arn(resource_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource_id, "Arn"]}


def _queue_properties(name: str, attributes: dict[str, str], tags: dict[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {"QueueName": name}
    for key, value in sorted(attributes.items()):
        if key == "RedrivePolicy":
            continue
        if key in _INTEGER_ATTRIBUTES:
            props[key] = int(value)
        elif key in _BOOLEAN_ATTRIBUTES:
            props[key] = value == "true"
        else:
            props[key] = value
    props["Tags"] = _tags(tags)
    return props


def _queues(q: QueueLayout, tags: dict[str, str]) -> dict[str, Any]:
    dead_id, queue_id = logical_id("Queue", q.dead_name), logical_id("Queue", q.sqs_name)
    queue = _queue_properties(q.sqs_name, q.attributes("DEAD_LETTER_ARN"), tags)
    queue["RedrivePolicy"] = {"deadLetterTargetArn": _arn(dead_id), "maxReceiveCount": q.max_receive_count}
    return {
        dead_id: {
            "Type": "AWS::SQS::Queue",
            **RETAIN,
            "Properties": _queue_properties(q.dead_name, q.dead_attributes(), tags),
        },
        queue_id: {"Type": "AWS::SQS::Queue", "Properties": queue},
    }


def _table(table: str, tags: dict[str, str]) -> dict[str, Any]:
    definition = res.results_table_definition(table)
    ttl = res.results_ttl_specification(table)["TimeToLiveSpecification"]
    return {
        "Type": "AWS::DynamoDB::Table",
        **RETAIN,
        "Properties": {
            "TableName": table,
            "KeySchema": definition["KeySchema"],
            "AttributeDefinitions": definition["AttributeDefinitions"],
            "BillingMode": definition["BillingMode"],
            "GlobalSecondaryIndexes": definition["GlobalSecondaryIndexes"],
            "TimeToLiveSpecification": {"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
            "Tags": _tags(tags),
        },
    }


def _role(name: str, principals: list[str], policy: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """A role whose policy's ARNs (built with ``Arns.cloudformation()``) are substituted."""
    for statement in policy["Statement"]:
        statement["Resource"] = [{"Fn::Sub": arn} for arn in statement["Resource"]]
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "Path": iam.ROLE_PATH,
            "AssumeRolePolicyDocument": iam.trust_policy(principals),
            "Policies": [{"PolicyName": iam.POLICY_NAME, "PolicyDocument": policy}],
            "Tags": _tags(tags),
        },
    }


def _schedules(layout: AWSLayout, tags: dict[str, str]) -> dict[str, Any]:
    """The schedule group, the role the schedules send with, and one schedule per periodic task."""
    group_id, role_id = logical_id("ScheduleGroup", layout.schedule_group), "SchedulerRole"
    policy = layout.scheduler_policy(iam.Arns.cloudformation())
    out: dict[str, Any] = {
        group_id: {
            "Type": "AWS::Scheduler::ScheduleGroup",
            "Properties": {"Name": layout.schedule_group, "Tags": _tags(tags)},
        },
        role_id: _role(layout.scheduler_role_name, [iam.SCHEDULER_PRINCIPAL], policy, tags),
    }
    for s in layout.schedules:
        out[logical_id("Schedule", s.spec.name)] = {
            "Type": "AWS::Scheduler::Schedule",
            "Properties": {
                "Name": s.spec.name,
                "GroupName": {"Ref": group_id},
                "ScheduleExpression": s.expression,
                "ScheduleExpressionTimezone": s.timezone,
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED",
                "Target": s.target(_arn(logical_id("Queue", s.queue_sqs_name)), _arn(role_id)),
            },
        }
    return out


def template(layout: AWSLayout) -> dict[str, Any]:
    tags = layout.tags
    model = layout.model
    resources: dict[str, Any] = {}
    if layout.bucket:
        resources[logical_id("Bucket", layout.bucket)] = {
            "Type": "AWS::S3::Bucket",
            "Properties": {"BucketName": layout.bucket, "Tags": _tags(tags)},
        }
    for q in layout.queues:
        resources.update(_queues(q, tags))
    if layout.table:
        resources[logical_id("Table", layout.table)] = _table(layout.table, tags)
    role_id = "Role"
    resources[role_id] = _role(layout.role_name, layout.principals(), layout.policy(iam.Arns.cloudformation()), tags)
    for q in layout.queues:
        fn = q.function
        if fn is None:
            continue
        function_id = logical_id("Function", fn.name)
        log_group_id = logical_id("LogGroup", fn.name)
        resources[log_group_id] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": fn.log_group,
                "RetentionInDays": layout.log_retention_days,
                "Tags": _tags(tags),
            },
        }
        resources[function_id] = {
            "Type": "AWS::Lambda::Function",
            "DependsOn": [log_group_id],  # so Lambda never creates the group itself, without retention
            "Properties": {
                "FunctionName": fn.name,
                "Runtime": layout.target.runtime,
                "Handler": packaging.ENTRY_HANDLER,
                "Role": _arn(role_id),
                "Timeout": fn.timeout_s,
                "MemorySize": fn.memory_mb,
                "Architectures": [layout.target.architecture],
                "Environment": {"Variables": layout.environment()},
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Tags": _tags(tags),
            },
        }
        mapping: dict[str, Any] = {
            "FunctionName": {"Ref": function_id},
            "EventSourceArn": _arn(logical_id("Queue", q.sqs_name)),
            "BatchSize": fn.batch_size,
            "MaximumBatchingWindowInSeconds": fn.batching_window_s,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "Enabled": True,
        }
        if fn.max_concurrency:
            mapping["ScalingConfig"] = {"MaximumConcurrency": fn.max_concurrency}
        resources[logical_id("Mapping", fn.name)] = {"Type": "AWS::Lambda::EventSourceMapping", "Properties": mapping}
    if layout.schedules:
        resources.update(_schedules(layout, tags))
    doc: dict[str, Any] = {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"cloudq app {model.app}, stage {model.stage} (cloudq deploy --emit cloudformation)",
    }
    if layout.functions:
        doc["Parameters"] = {
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the function archive"},
            "CodeKey": {
                "Type": "String",
                "Description": f"S3 key of the function archive (cloudq writes it to {BUILD_DIR}/{layout.archive_name}.zip)",
            },
        }
    doc["Resources"] = resources
    doc["Outputs"] = {"RoleArn": {"Value": _arn(role_id)}}
    return doc


def template_text(layout: AWSLayout) -> str:
    return yaml_text.dump(template(layout))
