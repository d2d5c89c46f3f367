"""SQS queues as deploy resources (dead-letter queues are queues too)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudq.deploy import Resource

from ... import resources as res
from .common import QUEUE, AWSOps, live_resource, mine, missing, owner


@dataclass
class QueueOps(AWSOps):
    kind = QUEUE
    prefix: str

    def _queue_url(self, name: str) -> str | None:
        found = missing(lambda: self.client("sqs").get_queue_url(QueueName=name))
        return str(found["QueueUrl"]) if found else None

    def read(self, desired: Resource) -> Resource | None:
        url = self._queue_url(desired.name)
        if url is None:
            return None
        sqs = self.client("sqs")
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        spec: dict[str, Any] = {k: attrs.get(k) for k in desired.spec if k != "tags"}
        if attrs.get("RedrivePolicy"):
            policy = json.loads(attrs["RedrivePolicy"])
            spec["RedrivePolicy"] = {
                "deadLetterTargetArn": policy.get("deadLetterTargetArn"),
                "maxReceiveCount": int(policy.get("maxReceiveCount", 0)),
            }
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        return live_resource(QUEUE, desired.name, spec, desired, tags)

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

    def create(self, r: Resource) -> None:
        self.client("sqs").create_queue(
            QueueName=r.name, Attributes=self._queue_attributes(r.spec), tags=r.spec["tags"]
        )

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        sqs = self.client("sqs")
        url = self._queue_url(r.name)
        attributes = self._queue_attributes({k: r.spec[k] for k in changes if k != "tags"})
        attributes.pop("FifoQueue", None)  # create-only: refused by the planner before we get here
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        if "tags" in changes:
            sqs.tag_queue(QueueUrl=url, Tags=r.spec["tags"])

    def delete(self, r: Resource) -> None:
        url = self._queue_url(r.name)
        if url is not None:
            self.client("sqs").delete_queue(QueueUrl=url)

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        prefix = self.prefix
        sqs = self.client("sqs")
        urls: list[str] = []
        for page in sqs.get_paginator("list_queues").paginate(**({"QueueNamePrefix": prefix} if prefix else {})):
            urls.extend(page.get("QueueUrls", []))
        found = []
        for url in urls:
            tags = missing(lambda u=url: sqs.list_queue_tags(QueueUrl=u).get("Tags", {})) or {}  # type: ignore[misc]
            if mine(tags, app, stage):
                name = url.rsplit("/", 1)[-1]
                found.append(Resource(QUEUE, name, {"tags": tags}, owner=owner(tags)))
        # dead-letter queues first (creation order), so teardown removes them last
        return sorted(found, key=lambda r: (not _is_dead_letter(r.name), r.name))


def _is_dead_letter(name: str) -> bool:
    base = name[: -len(res.FIFO_SUFFIX)] if res.is_fifo(name) else name
    return base.endswith(res.DLQ_SUFFIX)
