"""The functions' CloudWatch log groups as deploy resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudq.deploy import Resource

from .common import LOG_GROUP, AWSOps, live_resource, mine, missing, owner


@dataclass
class LogGroupOps(AWSOps):
    kind = LOG_GROUP
    prefix: str

    def _log_group(self, name: str) -> dict[str, Any] | None:
        pages = self.client("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
        return next((g for page in pages for g in page.get("logGroups", []) if g["logGroupName"] == name), None)

    def _log_group_tags(self, group: Mapping[str, Any]) -> dict[str, str]:
        arn = str(group["arn"]).removesuffix(":*")
        return dict(self.client("logs").list_tags_for_resource(resourceArn=arn).get("tags", {}))

    def read(self, desired: Resource) -> Resource | None:
        group = self._log_group(desired.name)
        if group is None:
            return None
        spec = {"RetentionInDays": group.get("retentionInDays")}
        return live_resource(LOG_GROUP, desired.name, spec, desired, self._log_group_tags(group))

    def create(self, r: Resource) -> None:
        self.client("logs").create_log_group(logGroupName=r.name, tags=r.spec["tags"])
        self.client("logs").put_retention_policy(logGroupName=r.name, retentionInDays=r.spec["RetentionInDays"])

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        logs = self.client("logs")
        if "RetentionInDays" in changes:
            logs.put_retention_policy(logGroupName=r.name, retentionInDays=r.spec["RetentionInDays"])
        group = self._log_group(r.name)
        if "tags" in changes and group is not None:
            logs.tag_resource(resourceArn=str(group["arn"]).removesuffix(":*"), tags=r.spec["tags"])

    def delete(self, r: Resource) -> None:
        missing(lambda: self.client("logs").delete_log_group(logGroupName=r.name))

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        """Log groups are listed under the prefix of this app's function names, not account-wide."""
        prefix = self.prefix
        found = []
        for page in self.client("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
            for group in page.get("logGroups", []):
                tags = self._log_group_tags(group)
                if mine(tags, app, stage):
                    found.append(Resource(LOG_GROUP, group["logGroupName"], {"tags": tags}, owner=owner(tags)))
        return found
