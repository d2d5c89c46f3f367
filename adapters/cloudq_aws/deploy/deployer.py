"""``cloudq deploy`` on AWS: SQS queues with dead-letter queues, the DynamoDB results table, the
S3 payload bucket, one IAM role, and a Lambda function + SQS event source mapping per queue that
runs on Lambda.

The desired state is data (layout.py names and checks it, resources.py gives attributes);
ops.py reads and changes one resource at a time; cloudformation.py writes the same
resources as a template.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cloudq.deploy import AppModel, Resource, Step, refuse_if
from cloudq.errors import ConfigurationError

from .. import resources as res
from ..errors import translated
from ..session import Clients
from . import iam, packaging
from .layout import BUILD_DIR, AWSLayout, build_layout, tag_value
from .ops import (
    BUCKET,
    FUNCTION,
    KIND_ORDER,
    LOG_GROUP,
    MAPPING,
    QUEUE,
    ROLE,
    SCHEDULE,
    SCHEDULE_GROUP,
    TABLE,
    mapping_name,
    resource_ops,
    schedule_name,
)
from .schedules import schedules_cost

log = logging.getLogger("cloudq.deploy")
PROVIDER = "aws"


def queue_spec(attributes: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, Any]:
    """SQS attributes in the plan's normal form (RedrivePolicy parsed, the count a number)."""
    import json

    spec: dict[str, Any] = dict(attributes)
    if "RedrivePolicy" in spec:
        policy = json.loads(spec["RedrivePolicy"])
        spec["RedrivePolicy"] = {
            "deadLetterTargetArn": policy["deadLetterTargetArn"],
            "maxReceiveCount": int(policy["maxReceiveCount"]),
        }
    spec["tags"] = dict(tags)
    return spec


def table_spec(table: str, tags: Mapping[str, str]) -> dict[str, Any]:
    definition = res.results_table_definition(table)
    ttl = res.results_ttl_specification(table)["TimeToLiveSpecification"]
    return {
        "KeySchema": definition["KeySchema"],
        "BillingMode": definition["BillingMode"],
        "TimeToLive": ttl["AttributeName"],
        "Indexes": [index["IndexName"] for index in definition["GlobalSecondaryIndexes"]],
        "tags": dict(tags),
    }


class AWSDeployer:
    provider = PROVIDER
    scheduler = "EventBridge Scheduler"

    def __init__(self, model: AppModel, project: Path | None = None) -> None:
        self.model = model
        self.layout: AWSLayout = build_layout(model)
        self.project = project or Path.cwd()
        self.clients = Clients(self.layout.broker.clients.config)
        self.ops = resource_ops(
            self.clients,
            self._code,
            queue_prefix=self.layout.broker.prefix,
            buckets=[self.layout.bucket] if self.layout.bucket else [],
            log_group_prefix=self.layout.log_group_prefix,
        )
        self._arns: iam.Arns | None = None
        self._package: packaging.Package | None = None
        self._written: Path | None = None  # where --emit wrote the archive

    def __repr__(self) -> str:
        return f"<AWSDeployer app={self.model.app} stage={self.model.stage}>"

    # -- inputs -------------------------------------------------------------------------------

    @property
    def arns(self) -> iam.Arns:
        """ARNs in this account and region (one STS call)."""
        if self._arns is None:
            with translated("sts:GetCallerIdentity", "the current credentials", self.clients.config.endpoint_url):
                identity = self.clients.get("sts").get_caller_identity()
            partition = str(identity["Arn"]).split(":")[1]
            self._arns = iam.Arns(partition, self.clients.get("sqs").meta.region_name, str(identity["Account"]))
        return self._arns

    @property
    def package(self) -> packaging.Package:
        """The function archive, built once per run (only when some queue runs on Lambda)."""
        if self._package is None:
            p = self.model.package
            try:
                self._package = packaging.package_app(
                    self.model.app_path.partition(":")[0],
                    self.project,
                    p.include,
                    p.exclude,
                    p.requirements,
                    self.layout.target,
                )
            except LookupError as exc:
                raise ConfigurationError(f"cannot package the function code: {exc}") from None
            log.info("function archive: %d files, %.1f MB", self._package.files, self._package.size / 1e6)
        return self._package

    def _code(self) -> bytes:
        return self.package.data

    def write_archive(self) -> Path:
        """The archive on disk, for CloudFormation users to upload (only ``--emit`` writes it)."""
        path = self.project / BUILD_DIR / f"{self.layout.archive_name}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.package.data)
        self._written = path
        return path

    # -- the Deployer protocol ---------------------------------------------------------------

    def problems(self) -> list[str]:
        problems = self.layout.problems()
        if self.layout.functions and not problems:
            problems.extend(self.package.problems())
        return problems

    def desired(self) -> list[Resource]:
        layout, arns, tags = self.layout, self.arns, self.layout.tags
        out: list[Resource] = []
        if layout.bucket:
            out.append(Resource(BUCKET, layout.bucket, {"tags": tags}))
        for q in layout.queues:
            fifo_only = frozenset({"FifoQueue"})
            out.append(Resource(QUEUE, q.dead_name, queue_spec(q.dead_attributes(), tags), fifo_only))
            out.append(Resource(QUEUE, q.sqs_name, queue_spec(q.attributes(arns.queue(q.dead_name)), tags), fifo_only))
        if layout.table:
            out.append(Resource(TABLE, layout.table, table_spec(layout.table, tags), frozenset({"KeySchema"})))
        role = {
            "Path": iam.ROLE_PATH,
            "AssumeRolePolicyDocument": iam.trust_policy(layout.principals()),
            "Policy": layout.policy(arns),
            "tags": tags,
        }
        out.append(Resource(ROLE, layout.role_name, role, frozenset({"Path"})))
        if layout.schedules:
            scheduler_role = {
                "Path": iam.ROLE_PATH,
                "AssumeRolePolicyDocument": iam.trust_policy([iam.SCHEDULER_PRINCIPAL]),
                "Policy": layout.scheduler_policy(arns),
                "tags": tags,
            }
            out.append(Resource(ROLE, layout.scheduler_role_name, scheduler_role, frozenset({"Path"})))
        for q in layout.queues:
            fn = q.function
            if fn is None:
                continue
            group = {"RetentionInDays": layout.log_retention_days, "tags": tags}
            out.append(Resource(LOG_GROUP, fn.log_group, group))
            function = {
                "Runtime": layout.target.runtime,
                "Handler": packaging.ENTRY_HANDLER,
                "Role": arns.role(layout.role_name),
                "Timeout": fn.timeout_s,
                "MemorySize": fn.memory_mb,
                "Architectures": [layout.target.architecture],
                "Environment": layout.environment(),
                "CodeSha256": self.package.sha256,
                "tags": tags,
            }
            out.append(Resource(FUNCTION, fn.name, function))
            mapping = {
                "FunctionName": fn.name,
                "EventSourceArn": arns.queue(q.sqs_name),
                "BatchSize": fn.batch_size,
                "MaximumBatchingWindowInSeconds": fn.batching_window_s,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": fn.max_concurrency} if fn.max_concurrency else {},
                "Enabled": True,
            }
            name = mapping_name(arns.queue(q.sqs_name), fn.name)
            out.append(Resource(MAPPING, name, mapping, frozenset({"FunctionName", "EventSourceArn"})))
        if layout.schedules:
            out.append(Resource(SCHEDULE_GROUP, layout.schedule_group, {"tags": tags}))
        role_arn = arns.role(layout.scheduler_role_name)
        for s in layout.schedules:
            spec = {
                "ScheduleExpression": s.expression,
                "ScheduleExpressionTimezone": s.timezone,
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED",
                "Target": s.target(arns.queue(s.queue_sqs_name), role_arn),
            }
            out.append(Resource(SCHEDULE, schedule_name(s.group, s.spec.name), spec))
        return out

    def live(self, desired: Sequence[Resource]) -> dict[str, Resource]:
        found: dict[str, Resource] = {}
        for r in desired:
            with translated(f"reading {r.kind}", r.name, self.clients.config.endpoint_url):
                live = self.ops[r.kind].read(r)
            if live is not None:
                found[r.key] = live
        return found

    def managed(self) -> list[Resource]:
        app, stage = tag_value(self.model.app), self.model.stage
        found: list[Resource] = []
        with translated("listing cloudq's resources", f"app {app} stage {stage}", self.clients.config.endpoint_url):
            for kind in KIND_ORDER:
                found += self.ops[kind].managed(app, stage, found)
        return sorted(found, key=lambda r: KIND_ORDER.index(r.kind))  # stable: keeps each kind's own order

    def notes(self) -> list[str]:
        notes = []
        if self.model.settings.signing_key is not None and self.layout.functions:
            notes.append(
                "the signing key is not copied into the functions: set CLOUDQ_SIGNING_KEY on them from your "
                "secret store (e.g. aws lambda update-function-configuration --function-name NAME --environment ...)"
            )
        return notes

    def info(self) -> list[str]:
        lines = [schedules_cost(self.layout.schedules)] if self.layout.schedules else []
        return lines + self._function_info()

    def _function_info(self) -> list[str]:
        if not self.layout.functions:
            return []
        p = self.package
        where = (
            f"written to {self._written.relative_to(self.project)}"
            if self._written
            else f"not written to disk (--emit cloudformation writes it to {BUILD_DIR}/{self.layout.archive_name}.zip)"
        )
        return [
            f"Function code: {p.target} ({p.size / 1e6:.1f} MB zipped, {p.unzipped_bytes / 1e6:.1f} MB unzipped, "
            f"{p.files} files, CodeSha256 {p.sha256}), {where}"
        ]

    def apply(self, step: Step) -> None:
        r, ops = step.resource, self.ops[step.resource.kind]
        with translated(f"{step.action} {r.kind}", r.name, self.clients.config.endpoint_url):
            if step.action == "create":
                ops.create(r)
            elif step.action == "update":
                ops.update(r, step.changes)
            elif step.action == "delete":
                ops.delete(r)

    def emit(self, fmt: str) -> str:
        """The CloudFormation template, checked like a deploy first; the archive it refers to is
        written to build/cloudq/ (``info`` says so), for the user to upload."""
        if fmt != "cloudformation":
            raise ConfigurationError(f"the AWS deployer emits 'cloudformation', not {fmt!r}")
        from .cloudformation import template_text

        refuse_if(self.problems())
        if self.layout.functions:
            self.write_archive()
        return template_text(self.layout)
