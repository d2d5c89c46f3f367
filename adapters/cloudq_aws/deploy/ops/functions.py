"""Lambda functions as deploy resources; ``code`` gives the archive when one is created."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudq.deploy import Resource

from .common import FUNCTION, AWSOps, live_resource, mine, missing, owner, pick, wait_for_propagation


@dataclass
class FunctionOps(AWSOps):
    kind = FUNCTION
    code: Callable[[], bytes]

    def read(self, desired: Resource) -> Resource | None:
        found = missing(lambda: self.client("lambda").get_function(FunctionName=desired.name))
        if found is None:
            return None
        config = found["Configuration"]
        spec = {key: config.get(key) for key in desired.spec if key not in {"tags", "Environment"}}
        spec["Environment"] = config.get("Environment", {}).get("Variables", {})
        return live_resource(FUNCTION, desired.name, spec, desired, found.get("Tags", {}))

    @staticmethod
    def _function_config(r: Resource) -> dict[str, Any]:
        settings = pick(r.spec, ("Runtime", "Role", "Handler", "Timeout", "MemorySize"))
        return {**settings, "Environment": {"Variables": r.spec["Environment"]}}

    def create(self, r: Resource) -> None:
        fn = self.client("lambda")
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

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        fn = self.client("lambda")
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

    def delete(self, r: Resource) -> None:
        missing(lambda: self.client("lambda").delete_function(FunctionName=r.name))

    def _functions(self) -> Iterator[dict[str, Any]]:
        for page in self.client("lambda").get_paginator("list_functions").paginate():
            yield from page.get("Functions", [])

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        fn = self.client("lambda")
        found = []
        for config in self._functions():
            tags = fn.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
            if mine(tags, app, stage):
                found.append(Resource(FUNCTION, config["FunctionName"], {"tags": tags}, owner=owner(tags)))
        return found
