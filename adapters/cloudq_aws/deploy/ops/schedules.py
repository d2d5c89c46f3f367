"""EventBridge Scheduler schedule groups and schedules as deploy resources.

Schedules carry no tags: the group does (one per app and stage), and a schedule belongs to whoever
owns its group. A schedule's resource name is ``group/name``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cloudq.deploy import Resource

from .common import SCHEDULE, SCHEDULE_GROUP, AWSOps, from_tag_pairs, live_resource, mine, missing, owner, tag_pairs

GROUP_PREFIX = "cloudq-"
SCHEDULE_KEYS = ("ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow", "State", "Target")
TARGET_KEYS = ("Arn", "RoleArn", "Input", "RetryPolicy", "SqsParameters")


class ScheduleGroupOps(AWSOps):
    kind = SCHEDULE_GROUP

    def _tags(self, arn: str) -> dict[str, str]:
        return from_tag_pairs(self.client("scheduler").list_tags_for_resource(ResourceArn=arn).get("Tags"))

    def read(self, desired: Resource) -> Resource | None:
        found = missing(lambda: self.client("scheduler").get_schedule_group(Name=desired.name))
        if found is None:
            return None
        return live_resource(SCHEDULE_GROUP, desired.name, {}, desired, self._tags(found["Arn"]))

    def create(self, r: Resource) -> None:
        self.client("scheduler").create_schedule_group(Name=r.name, Tags=tag_pairs(r.spec["tags"]))

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        if "tags" in changes:
            scheduler = self.client("scheduler")
            arn = scheduler.get_schedule_group(Name=r.name)["Arn"]
            scheduler.tag_resource(ResourceArn=arn, Tags=tag_pairs(r.spec["tags"]))

    def delete(self, r: Resource) -> None:
        missing(lambda: self.client("scheduler").delete_schedule_group(Name=r.name))

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        scheduler = self.client("scheduler")
        found = []
        for page in scheduler.get_paginator("list_schedule_groups").paginate(NamePrefix=GROUP_PREFIX):
            for group in page.get("ScheduleGroups", []):
                tags = self._tags(group["Arn"])
                if mine(tags, app, stage):
                    found.append(Resource(SCHEDULE_GROUP, group["Name"], {"tags": tags}, owner=owner(tags)))
        return found


def schedule_name(group: str, name: str) -> str:
    return f"{group}/{name}"


class ScheduleOps(AWSOps):
    kind = SCHEDULE

    def read(self, desired: Resource) -> Resource | None:
        group, _, name = desired.name.partition("/")
        found = missing(lambda: self.client("scheduler").get_schedule(Name=name, GroupName=group))
        if found is None:
            return None
        target = found.get("Target") or {}
        spec = {key: found.get(key) for key in SCHEDULE_KEYS if key != "Target"}
        spec["Target"] = {key: target[key] for key in TARGET_KEYS if key in target}
        return Resource(SCHEDULE, desired.name, spec, desired.create_only)

    def _call(self, r: Resource) -> dict[str, Any]:
        group, _, name = r.name.partition("/")
        return {"Name": name, "GroupName": group, **{key: r.spec[key] for key in SCHEDULE_KEYS}}

    def create(self, r: Resource) -> None:
        self.client("scheduler").create_schedule(**self._call(r))

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        self.client("scheduler").update_schedule(**self._call(r))  # replaces the whole definition

    def delete(self, r: Resource) -> None:
        group, _, name = r.name.partition("/")
        missing(lambda: self.client("scheduler").delete_schedule(Name=name, GroupName=group))

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        """The schedules in this app's and stage's groups (found before, in ``listed``)."""
        scheduler = self.client("scheduler")
        found = []
        for group in [r for r in listed if r.kind == SCHEDULE_GROUP]:
            for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group.name):
                for item in page.get("Schedules", []):
                    found.append(Resource(SCHEDULE, schedule_name(group.name, item["Name"]), {}, owner=group.owner))
        return found
