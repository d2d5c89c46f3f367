"""Read, create, update, delete and list each kind of AWS resource ``cloudq deploy`` manages: one
``ResourceOps`` per kind, so adding a kind is one class and one line in ``resource_ops``.

Every reader returns the resource in the same normal form the deployer builds its wishes in
(strings for SQS attributes, a parsed RedrivePolicy, tags limited to the keys cloudq sets), so
a plan is a plain comparison. Listing finds what carries this app's and stage's tags, and
nothing else, which is all ``destroy`` and the deletes of a plan ever touch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from cloudq.deploy import Resource

from ...session import Clients
from .buckets import BucketOps
from .common import BUCKET, FUNCTION, KIND_ORDER, LOG_GROUP, MAPPING, QUEUE, ROLE, SCHEDULE, SCHEDULE_GROUP, TABLE
from .functions import FunctionOps
from .log_groups import LogGroupOps
from .mappings import MappingOps, mapping_name
from .queues import QueueOps
from .roles import RoleOps
from .schedules import ScheduleGroupOps, ScheduleOps, schedule_name
from .tables import TableOps

__all__ = [
    "BUCKET",
    "FUNCTION",
    "KIND_ORDER",
    "LOG_GROUP",
    "MAPPING",
    "QUEUE",
    "ROLE",
    "SCHEDULE",
    "SCHEDULE_GROUP",
    "TABLE",
    "ResourceOps",
    "mapping_name",
    "resource_ops",
    "schedule_name",
]


class ResourceOps(Protocol):
    """The AWS calls behind one kind of resource."""

    kind: str

    def read(self, desired: Resource) -> Resource | None:
        """The live resource in the desired one's normal form, or None when it does not exist."""

    def create(self, r: Resource) -> None: ...

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (the spec keys that differ) to make the live resource ``r``."""

    def delete(self, r: Resource) -> None:
        """Delete it; already gone is not an error."""

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        """The resources of this kind tagged as ``app``/``stage``'s; ``listed`` holds those of
        the kinds before it in KIND_ORDER (a mapping is found through its function)."""


def resource_ops(
    clients: Clients, code: Callable[[], bytes], queue_prefix: str, buckets: list[str], log_group_prefix: str
) -> dict[str, ResourceOps]:
    """Each kind's operations, in KIND_ORDER."""
    ops: list[ResourceOps] = [
        BucketOps(clients, buckets),
        QueueOps(clients, queue_prefix),
        TableOps(clients),
        RoleOps(clients),
        LogGroupOps(clients, log_group_prefix),
        FunctionOps(clients, code),
        MappingOps(clients),
        ScheduleGroupOps(clients),
        ScheduleOps(clients),
    ]
    return {o.kind: o for o in ops}
