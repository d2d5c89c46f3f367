"""The DynamoDB results table as a deploy resource."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cloudq.deploy import Resource

from ... import resources as res
from .common import TABLE, AWSOps, from_tag_pairs, live_resource, mine, missing, owner, tag_pairs


class TableOps(AWSOps):
    kind = TABLE

    def read(self, desired: Resource) -> Resource | None:
        db = self.client("dynamodb")
        found = missing(lambda: db.describe_table(TableName=desired.name))
        if found is None:
            return None
        table = found["Table"]
        ttl = db.describe_time_to_live(TableName=desired.name).get("TimeToLiveDescription", {})
        tags = from_tag_pairs(db.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags"))
        spec = {
            "KeySchema": table.get("KeySchema"),
            "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
            "TimeToLive": ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"} else None,
            "Indexes": sorted(index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])),
        }
        return live_resource(TABLE, desired.name, spec, desired, tags)

    def create(self, r: Resource) -> None:
        db = self.client("dynamodb")
        db.create_table(**res.results_table_definition(r.name), Tags=tag_pairs(r.spec["tags"]))
        db.get_waiter("table_exists").wait(TableName=r.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        db.update_time_to_live(**res.results_ttl_specification(r.name))

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        db = self.client("dynamodb")
        if "BillingMode" in changes:
            db.update_table(TableName=r.name, BillingMode=r.spec["BillingMode"])
        if "TimeToLive" in changes:
            db.update_time_to_live(**res.results_ttl_specification(r.name))
        if "Indexes" in changes:  # a table made before the task index: add it (DynamoDB backfills it)
            db.update_table(**res.add_index_request(r.name))
        if "tags" in changes:
            arn = db.describe_table(TableName=r.name)["Table"]["TableArn"]
            db.tag_resource(ResourceArn=arn, Tags=tag_pairs(r.spec["tags"]))

    def delete(self, r: Resource) -> None:
        missing(lambda: self.client("dynamodb").delete_table(TableName=r.name))

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        db = self.client("dynamodb")
        found = []
        for page in db.get_paginator("list_tables").paginate():
            for name in page.get("TableNames", []):
                table = missing(lambda n=name: db.describe_table(TableName=n))  # type: ignore[misc]
                if table is None:
                    continue
                tags = from_tag_pairs(db.list_tags_of_resource(ResourceArn=table["Table"]["TableArn"]).get("Tags"))
                if mine(tags, app, stage):
                    found.append(Resource(TABLE, name, {"tags": tags}, owner=owner(tags)))
        return found
