"""Read, create, update, delete and list each kind of AWS resource ``cloudq deploy`` manages.

Every reader returns the resource in the same normal form the deployer builds its wishes in
(strings for SQS attributes, a parsed RedrivePolicy, tags limited to the keys cloudq sets), so
a plan is a plain comparison. Listing finds what carries this app's and stage's tags, and
nothing else, which is all ``destroy`` and the deletes of a plan ever touch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cloudq.deploy import Resource
from cloudq.deploy.base import owner_of

from .. import resources as res
from ..errors import error_code
from ..session import Clients
from . import iam
from .layout import TAG_SEPARATOR

log = logging.getLogger("cloudq.deploy")
T = TypeVar("T")

QUEUE = "sqs.queue"
TABLE = "dynamodb.table"
BUCKET = "s3.bucket"
ROLE = "iam.role"
LOG_GROUP = "logs.group"
FUNCTION = "lambda.function"
MAPPING = "lambda.mapping"
# creation order; deletes go backwards. A function's log group comes first, so Lambda never makes
# one itself (without retention) on the first invocation.
KIND_ORDER = (BUCKET, QUEUE, TABLE, ROLE, LOG_GROUP, FUNCTION, MAPPING)

PROPAGATION_ATTEMPTS = 12  # a new IAM role takes seconds to be usable by Lambda
PROPAGATION_DELAY_S = 5.0
_MISSING = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NoSuchBucket",
    "404",
    "NotFound",
    "NoSuchTagSet",
    "NoSuchTagSetError",
}


def missing(call: Callable[[], T]) -> T | None:
    """The call's result, or None when AWS says the thing does not exist."""
    try:
        return call()
    except Exception as exc:
        if error_code(exc) in _MISSING:
            return None
        raise


def owner(tags: Mapping[str, str]) -> tuple[str, str] | None:
    return owner_of(tags, TAG_SEPARATOR)


def _pairs(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _from_pairs(pairs: list[dict[str, str]] | None) -> dict[str, str]:
    return {p["Key"]: p["Value"] for p in pairs or []}


def _found(kind: str, name: str, spec: dict[str, Any], desired: Resource | None, tags: dict[str, str]) -> Resource:
    """A live resource: tags limited to the keys the desired one sets (other tags are the user's)."""
    wanted = desired.spec.get("tags", {}) if desired else tags
    spec["tags"] = {k: v for k, v in tags.items() if k in wanted}
    return Resource(kind, name, spec, desired.create_only if desired else frozenset(), owner(tags))


def _mine(tags: Mapping[str, str], app: str, stage: str) -> bool:
    return owner(tags) == (app, stage)


def wait_for_propagation(what: str, call: Callable[[], T]) -> T:
    """Retry a call AWS refuses until a just-made role or policy has propagated."""
    for attempt in range(1, PROPAGATION_ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:
            if error_code(exc) != "InvalidParameterValueException" or attempt == PROPAGATION_ATTEMPTS:
                raise
            log.info("%s: waiting for IAM to propagate (%s)", what, exc)
            time.sleep(PROPAGATION_DELAY_S)
    raise AssertionError("unreachable")


@dataclass
class Ops:
    """The AWS calls behind each step; ``code`` gives the function archive when one is created."""

    clients: Clients
    code: Callable[[], bytes]

    def _c(self, service: str) -> Any:
        return self.clients.get(service)

    # -- SQS ----------------------------------------------------------------------------------

    def _queue_url(self, name: str) -> str | None:
        found = missing(lambda: self._c("sqs").get_queue_url(QueueName=name))
        return str(found["QueueUrl"]) if found else None

    def read_queue(self, desired: Resource) -> Resource | None:
        url = self._queue_url(desired.name)
        if url is None:
            return None
        sqs = self._c("sqs")
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        spec: dict[str, Any] = {k: attrs.get(k) for k in desired.spec if k != "tags"}
        if attrs.get("RedrivePolicy"):
            policy = json.loads(attrs["RedrivePolicy"])
            spec["RedrivePolicy"] = {
                "deadLetterTargetArn": policy.get("deadLetterTargetArn"),
                "maxReceiveCount": int(policy.get("maxReceiveCount", 0)),
            }
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        return _found(QUEUE, desired.name, spec, desired, tags)

    @staticmethod
    def _queue_attributes(spec: Mapping[str, Any]) -> dict[str, str]:
        out = {k: str(v) for k, v in spec.items() if k not in {"tags", "RedrivePolicy"}}
        if "RedrivePolicy" in spec:
            policy = spec["RedrivePolicy"]
            out["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": policy["deadLetterTargetArn"],
                    "maxReceiveCount": str(policy["maxReceiveCount"]),
                }
            )
        return out

    def create_queue(self, r: Resource) -> None:
        self._c("sqs").create_queue(QueueName=r.name, Attributes=self._queue_attributes(r.spec), tags=r.spec["tags"])

    def update_queue(self, r: Resource, changes: Mapping[str, Any]) -> None:
        sqs = self._c("sqs")
        url = self._queue_url(r.name)
        attributes = self._queue_attributes({k: r.spec[k] for k in changes if k != "tags"})
        attributes.pop("FifoQueue", None)  # create-only: refused by the planner before we get here
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        if "tags" in changes:
            sqs.tag_queue(QueueUrl=url, Tags=r.spec["tags"])

    def delete_queue(self, r: Resource) -> None:
        url = self._queue_url(r.name)
        if url is not None:
            self._c("sqs").delete_queue(QueueUrl=url)

    def managed_queues(self, app: str, stage: str, prefix: str) -> list[Resource]:
        sqs = self._c("sqs")
        urls: list[str] = []
        for page in sqs.get_paginator("list_queues").paginate(**({"QueueNamePrefix": prefix} if prefix else {})):
            urls.extend(page.get("QueueUrls", []))
        found = []
        for url in urls:
            tags = missing(lambda u=url: sqs.list_queue_tags(QueueUrl=u).get("Tags", {})) or {}  # type: ignore[misc]
            if _mine(tags, app, stage):
                name = url.rsplit("/", 1)[-1]
                found.append(Resource(QUEUE, name, {"tags": tags}, owner=owner(tags)))
        # dead-letter queues first (creation order), so teardown removes them last
        return sorted(found, key=lambda r: (not _is_dead_letter(r.name), r.name))

    # -- DynamoDB -----------------------------------------------------------------------------

    def read_table(self, desired: Resource) -> Resource | None:
        db = self._c("dynamodb")
        found = missing(lambda: db.describe_table(TableName=desired.name))
        if found is None:
            return None
        table = found["Table"]
        ttl = db.describe_time_to_live(TableName=desired.name).get("TimeToLiveDescription", {})
        tags = _from_pairs(db.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags"))
        spec = {
            "KeySchema": table.get("KeySchema"),
            "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
            "TimeToLive": ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"} else None,
        }
        return _found(TABLE, desired.name, spec, desired, tags)

    def create_table(self, r: Resource) -> None:
        db = self._c("dynamodb")
        db.create_table(**res.results_table_definition(r.name), Tags=_pairs(r.spec["tags"]))
        db.get_waiter("table_exists").wait(TableName=r.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        db.update_time_to_live(**res.results_ttl_specification(r.name))

    def update_table(self, r: Resource, changes: Mapping[str, Any]) -> None:
        db = self._c("dynamodb")
        if "BillingMode" in changes:
            db.update_table(TableName=r.name, BillingMode=r.spec["BillingMode"])
        if "TimeToLive" in changes:
            db.update_time_to_live(**res.results_ttl_specification(r.name))
        if "tags" in changes:
            arn = db.describe_table(TableName=r.name)["Table"]["TableArn"]
            db.tag_resource(ResourceArn=arn, Tags=_pairs(r.spec["tags"]))

    def delete_table(self, r: Resource) -> None:
        missing(lambda: self._c("dynamodb").delete_table(TableName=r.name))

    def managed_tables(self, app: str, stage: str) -> list[Resource]:
        db = self._c("dynamodb")
        found = []
        for page in db.get_paginator("list_tables").paginate():
            for name in page.get("TableNames", []):
                table = missing(lambda n=name: db.describe_table(TableName=n))  # type: ignore[misc]
                if table is None:
                    continue
                tags = _from_pairs(db.list_tags_of_resource(ResourceArn=table["Table"]["TableArn"]).get("Tags"))
                if _mine(tags, app, stage):
                    found.append(Resource(TABLE, name, {"tags": tags}, owner=owner(tags)))
        return found

    # -- S3 -----------------------------------------------------------------------------------

    def _bucket_tags(self, name: str) -> dict[str, str]:
        found = missing(lambda: self._c("s3").get_bucket_tagging(Bucket=name))
        return _from_pairs(found.get("TagSet") if found else None)

    def read_bucket(self, desired: Resource) -> Resource | None:
        """A bucket cloudq did not create is used as it is: never tagged, so never emptied or deleted
        (it may hold other data); it reads back as wanted."""
        if missing(lambda: self._c("s3").head_bucket(Bucket=desired.name)) is None:
            return None
        tags = self._bucket_tags(desired.name)
        if owner(tags) is None:
            return Resource(BUCKET, desired.name, dict(desired.spec), desired.create_only)
        return _found(BUCKET, desired.name, {}, desired, tags)

    def create_bucket(self, r: Resource) -> None:
        s3 = self._c("s3")
        s3.create_bucket(**res.bucket_definition(r.name, s3.meta.region_name))
        self.update_bucket(r, {"tags": None})

    def update_bucket(self, r: Resource, changes: Mapping[str, Any]) -> None:
        if "tags" in changes:
            tags = {**self._bucket_tags(r.name), **r.spec["tags"]}
            self._c("s3").put_bucket_tagging(Bucket=r.name, Tagging={"TagSet": _pairs(tags)})

    def delete_bucket(self, r: Resource) -> None:
        """Empty it (payloads only live as long as their messages), then delete it."""
        s3 = self._c("s3")
        if missing(lambda: s3.head_bucket(Bucket=r.name)) is None:
            return
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=r.name):
            objects = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if objects:
                s3.delete_objects(Bucket=r.name, Delete={"Objects": objects, "Quiet": True})
        s3.delete_bucket(Bucket=r.name)

    def managed_buckets(self, app: str, stage: str, candidates: list[str]) -> list[Resource]:
        """Buckets are checked by name (the ones this app's configuration names): listing every
        bucket of an account and its tags would be slow and reach into other teams' data."""
        found = []
        for name in candidates:
            if missing(lambda n=name: self._c("s3").head_bucket(Bucket=n)) is None:  # type: ignore[misc]
                continue
            tags = self._bucket_tags(name)
            if _mine(tags, app, stage):
                found.append(Resource(BUCKET, name, {"tags": tags}, owner=owner(tags)))
        return found

    # -- IAM ----------------------------------------------------------------------------------

    def read_role(self, desired: Resource) -> Resource | None:
        i = self._c("iam")
        found = missing(lambda: i.get_role(RoleName=desired.name))
        if found is None:
            return None
        role = found["Role"]
        policy = missing(lambda: i.get_role_policy(RoleName=desired.name, PolicyName=iam.POLICY_NAME))
        tags = _from_pairs(i.list_role_tags(RoleName=desired.name).get("Tags"))
        spec = {
            "Path": role.get("Path"),
            "AssumeRolePolicyDocument": _document(role.get("AssumeRolePolicyDocument")),
            "Policy": _document(policy["PolicyDocument"]) if policy else None,
        }
        return _found(ROLE, desired.name, spec, desired, tags)

    def create_role(self, r: Resource) -> None:
        i = self._c("iam")
        i.create_role(
            Path=r.spec["Path"],
            RoleName=r.name,
            AssumeRolePolicyDocument=json.dumps(r.spec["AssumeRolePolicyDocument"]),
            Description="cloudq runtime role (cloudq deploy)",
            Tags=_pairs(r.spec["tags"]),
        )
        self._put_policy(r)

    def _put_policy(self, r: Resource) -> None:
        self._c("iam").put_role_policy(
            RoleName=r.name, PolicyName=iam.POLICY_NAME, PolicyDocument=json.dumps(r.spec["Policy"])
        )

    def update_role(self, r: Resource, changes: Mapping[str, Any]) -> None:
        i = self._c("iam")
        if "AssumeRolePolicyDocument" in changes:
            i.update_assume_role_policy(RoleName=r.name, PolicyDocument=json.dumps(r.spec["AssumeRolePolicyDocument"]))
        if "Policy" in changes:
            self._put_policy(r)
        if "tags" in changes:
            i.tag_role(RoleName=r.name, Tags=_pairs(r.spec["tags"]))

    def delete_role(self, r: Resource) -> None:
        i = self._c("iam")
        for name in i.list_role_policies(RoleName=r.name).get("PolicyNames", []):
            i.delete_role_policy(RoleName=r.name, PolicyName=name)
        missing(lambda: i.delete_role(RoleName=r.name))

    def managed_roles(self, app: str, stage: str) -> list[Resource]:
        i = self._c("iam")
        found = []
        for page in i.get_paginator("list_roles").paginate(PathPrefix=iam.ROLE_PATH):
            for role in page.get("Roles", []):
                tags = _from_pairs(i.list_role_tags(RoleName=role["RoleName"]).get("Tags"))
                if _mine(tags, app, stage):
                    found.append(Resource(ROLE, role["RoleName"], {"tags": tags}, owner=owner(tags)))
        return found

    # -- CloudWatch Logs (the functions' log groups) --------------------------------------------

    def _log_group(self, name: str) -> dict[str, Any] | None:
        pages = self._c("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
        return next((g for page in pages for g in page.get("logGroups", []) if g["logGroupName"] == name), None)

    def _log_group_tags(self, group: Mapping[str, Any]) -> dict[str, str]:
        arn = str(group["arn"]).removesuffix(":*")
        return dict(self._c("logs").list_tags_for_resource(resourceArn=arn).get("tags", {}))

    def read_log_group(self, desired: Resource) -> Resource | None:
        group = self._log_group(desired.name)
        if group is None:
            return None
        spec = {"RetentionInDays": group.get("retentionInDays")}
        return _found(LOG_GROUP, desired.name, spec, desired, self._log_group_tags(group))

    def create_log_group(self, r: Resource) -> None:
        self._c("logs").create_log_group(logGroupName=r.name, tags=r.spec["tags"])
        self._c("logs").put_retention_policy(logGroupName=r.name, retentionInDays=r.spec["RetentionInDays"])

    def update_log_group(self, r: Resource, changes: Mapping[str, Any]) -> None:
        logs = self._c("logs")
        if "RetentionInDays" in changes:
            logs.put_retention_policy(logGroupName=r.name, retentionInDays=r.spec["RetentionInDays"])
        group = self._log_group(r.name)
        if "tags" in changes and group is not None:
            logs.tag_resource(resourceArn=str(group["arn"]).removesuffix(":*"), tags=r.spec["tags"])

    def delete_log_group(self, r: Resource) -> None:
        missing(lambda: self._c("logs").delete_log_group(logGroupName=r.name))

    def managed_log_groups(self, app: str, stage: str, prefix: str) -> list[Resource]:
        """Log groups are listed under the prefix of this app's function names, not account-wide."""
        found = []
        for page in self._c("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
            for group in page.get("logGroups", []):
                tags = self._log_group_tags(group)
                if _mine(tags, app, stage):
                    found.append(Resource(LOG_GROUP, group["logGroupName"], {"tags": tags}, owner=owner(tags)))
        return found

    # -- Lambda -------------------------------------------------------------------------------

    def read_function(self, desired: Resource) -> Resource | None:
        found = missing(lambda: self._c("lambda").get_function(FunctionName=desired.name))
        if found is None:
            return None
        config = found["Configuration"]
        spec = {key: config.get(key) for key in desired.spec if key not in {"tags", "Environment"}}
        spec["Environment"] = config.get("Environment", {}).get("Variables", {})
        return _found(FUNCTION, desired.name, spec, desired, found.get("Tags", {}))

    @staticmethod
    def _function_config(r: Resource) -> dict[str, Any]:
        s = r.spec
        return {
            "Runtime": s["Runtime"],
            "Role": s["Role"],
            "Handler": s["Handler"],
            "Timeout": s["Timeout"],
            "MemorySize": s["MemorySize"],
            "Environment": {"Variables": s["Environment"]},
        }

    def create_function(self, r: Resource) -> None:
        fn = self._c("lambda")
        wait_for_propagation(
            f"creating function {r.name}",
            lambda: fn.create_function(
                FunctionName=r.name,
                Code={"ZipFile": self.code()},
                Architectures=r.spec["Architectures"],
                Description="cloudq worker (cloudq deploy)",
                Tags=r.spec["tags"],
                **self._function_config(r),
            ),
        )
        fn.get_waiter("function_active_v2").wait(FunctionName=r.name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})

    def update_function(self, r: Resource, changes: Mapping[str, Any]) -> None:
        fn = self._c("lambda")
        updated = fn.get_waiter("function_updated_v2")
        if {"CodeSha256", "Architectures"} & set(changes):
            fn.update_function_code(FunctionName=r.name, ZipFile=self.code(), Architectures=r.spec["Architectures"])
            updated.wait(FunctionName=r.name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
        if set(changes) - {"CodeSha256", "Architectures", "tags"}:
            wait_for_propagation(
                f"updating function {r.name}",
                lambda: fn.update_function_configuration(FunctionName=r.name, **self._function_config(r)),
            )
            updated.wait(FunctionName=r.name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
        if "tags" in changes:
            arn = fn.get_function(FunctionName=r.name)["Configuration"]["FunctionArn"]
            fn.tag_resource(Resource=arn, Tags=r.spec["tags"])

    def delete_function(self, r: Resource) -> None:
        missing(lambda: self._c("lambda").delete_function(FunctionName=r.name))

    def _functions(self) -> Iterator[dict[str, Any]]:
        for page in self._c("lambda").get_paginator("list_functions").paginate():
            yield from page.get("Functions", [])

    def managed_functions(self, app: str, stage: str) -> list[Resource]:
        fn = self._c("lambda")
        found = []
        for config in self._functions():
            tags = fn.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
            if _mine(tags, app, stage):
                found.append(Resource(FUNCTION, config["FunctionName"], {"tags": tags}, owner=owner(tags)))
        return found

    # -- event source mappings (identified by function + queue; they have no name or tags) ---

    def _mapping(self, function: str, queue_arn: str) -> dict[str, Any] | None:
        found = missing(
            lambda: self._c("lambda").list_event_source_mappings(FunctionName=function, EventSourceArn=queue_arn)
        )
        mappings = (found or {}).get("EventSourceMappings", [])
        return mappings[0] if mappings else None

    def read_mapping(self, desired: Resource) -> Resource | None:
        config = self._mapping(desired.spec["FunctionName"], desired.spec["EventSourceArn"])
        if config is None:
            return None
        return Resource(MAPPING, desired.name, _mapping_spec(config), desired.create_only)

    def _mapping_settings(self, r: Resource) -> dict[str, Any]:
        s = r.spec
        return {
            "BatchSize": s["BatchSize"],
            "MaximumBatchingWindowInSeconds": s["MaximumBatchingWindowInSeconds"],
            "FunctionResponseTypes": s["FunctionResponseTypes"],
            "ScalingConfig": s["ScalingConfig"],
            "Enabled": s["Enabled"],
        }

    def create_mapping(self, r: Resource) -> None:
        fn = self._c("lambda")
        wait_for_propagation(
            f"connecting {r.name}",
            lambda: fn.create_event_source_mapping(
                FunctionName=r.spec["FunctionName"],
                EventSourceArn=r.spec["EventSourceArn"],
                **self._mapping_settings(r),
            ),
        )

    def update_mapping(self, r: Resource, changes: Mapping[str, Any]) -> None:
        config = self._mapping(r.spec["FunctionName"], r.spec["EventSourceArn"])
        if config is None:
            self.create_mapping(r)
            return
        self._c("lambda").update_event_source_mapping(UUID=config["UUID"], **self._mapping_settings(r))

    def delete_mapping(self, r: Resource) -> None:
        uuid = r.spec.get("UUID")
        if uuid is None:
            config = self._mapping(r.spec["FunctionName"], r.spec["EventSourceArn"])
            uuid = config["UUID"] if config else None
        if uuid is not None:
            missing(lambda: self._c("lambda").delete_event_source_mapping(UUID=uuid))

    def managed_mappings(self, functions: list[Resource]) -> list[Resource]:
        found = []
        for function in functions:
            page = self._c("lambda").list_event_source_mappings(FunctionName=function.name)
            for config in page.get("EventSourceMappings", []):
                spec = {**_mapping_spec(config), "UUID": config["UUID"]}
                found.append(Resource(MAPPING, mapping_name(spec["EventSourceArn"], function.name), spec))
        return found


def mapping_name(queue_arn: str, function: str) -> str:
    return f"{queue_arn.rsplit(':', 1)[-1]}->{function}"


def _mapping_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "FunctionName": str(config.get("FunctionArn", "")).split(":function:", 1)[-1].split(":", 1)[0],
        "EventSourceArn": config.get("EventSourceArn"),
        "BatchSize": config.get("BatchSize"),
        "MaximumBatchingWindowInSeconds": config.get("MaximumBatchingWindowInSeconds", 0),
        "FunctionResponseTypes": sorted(config.get("FunctionResponseTypes") or []),
        "ScalingConfig": config.get("ScalingConfig") or {},
        "Enabled": config.get("State") in {"Enabled", "Enabling", "Creating", "Updating"},
    }


def _document(value: Any) -> Any:
    """A policy document in the plan's form (a dict), in whichever form IAM returned it: decoded by
    boto3, JSON text, URL-encoded JSON, or the Python literal moto's CloudFormation stores. Text in
    none of these forms is returned as it is: the plan then shows it replaced by the wanted document."""
    if not isinstance(value, str):
        return value
    import ast
    from urllib.parse import unquote

    for text in dict.fromkeys((value, unquote(value))):
        try:
            return json.loads(text)
        except ValueError:
            pass
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(parsed, dict):
            return parsed
    return value


def _is_dead_letter(name: str) -> bool:
    base = name[: -len(res.FIFO_SUFFIX)] if res.is_fifo(name) else name
    return base.endswith(res.DLQ_SUFFIX)
