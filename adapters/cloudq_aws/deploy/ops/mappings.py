"""SQS event source mappings as deploy resources (identified by function + queue: they have no
name or tags)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cloudq.deploy import Resource

from .common import FUNCTION, MAPPING, AWSOps, missing, pick, wait_for_propagation


class MappingOps(AWSOps):
    kind = MAPPING

    def _mapping(self, function: str, queue_arn: str) -> dict[str, Any] | None:
        found = missing(
            lambda: self.client("lambda").list_event_source_mappings(FunctionName=function, EventSourceArn=queue_arn)
        )
        mappings = (found or {}).get("EventSourceMappings", [])
        return mappings[0] if mappings else None

    def read(self, desired: Resource) -> Resource | None:
        config = self._mapping(desired.spec["FunctionName"], desired.spec["EventSourceArn"])
        if config is None:
            return None
        return Resource(MAPPING, desired.name, _mapping_spec(config), desired.create_only)

    def _mapping_settings(self, r: Resource) -> dict[str, Any]:
        keys = ("BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig", "Enabled")
        return pick(r.spec, keys)

    def create(self, r: Resource) -> None:
        fn = self.client("lambda")
        wait_for_propagation(
            f"connecting {r.name}",
            lambda: fn.create_event_source_mapping(
                FunctionName=r.spec["FunctionName"],
                EventSourceArn=r.spec["EventSourceArn"],
                **self._mapping_settings(r),
            ),
        )

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        config = self._mapping(r.spec["FunctionName"], r.spec["EventSourceArn"])
        if config is None:
            self.create(r)
            return
        self.client("lambda").update_event_source_mapping(UUID=config["UUID"], **self._mapping_settings(r))

    def delete(self, r: Resource) -> None:
        uuid = r.spec.get("UUID")
        if uuid is None:
            config = self._mapping(r.spec["FunctionName"], r.spec["EventSourceArn"])
            uuid = config["UUID"] if config else None
        if uuid is not None:
            missing(lambda: self.client("lambda").delete_event_source_mapping(UUID=uuid))

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        found = []
        for function in [r for r in listed if r.kind == FUNCTION]:
            page = self.client("lambda").list_event_source_mappings(FunctionName=function.name)
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
