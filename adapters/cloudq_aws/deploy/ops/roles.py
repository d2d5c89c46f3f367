"""The functions' IAM role and its inline policy as a deploy resource."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cloudq.deploy import Resource

from .. import iam
from .common import ROLE, AWSOps, document, from_tag_pairs, live_resource, mine, missing, owner, tag_pairs


class RoleOps(AWSOps):
    kind = ROLE

    def read(self, desired: Resource) -> Resource | None:
        i = self.client("iam")
        found = missing(lambda: i.get_role(RoleName=desired.name))
        if found is None:
            return None
        role = found["Role"]
        policy = missing(lambda: i.get_role_policy(RoleName=desired.name, PolicyName=iam.POLICY_NAME))
        tags = from_tag_pairs(i.list_role_tags(RoleName=desired.name).get("Tags"))
        spec = {
            "Path": role.get("Path"),
            "AssumeRolePolicyDocument": document(role.get("AssumeRolePolicyDocument")),
            "Policy": document(policy["PolicyDocument"]) if policy else None,
        }
        return live_resource(ROLE, desired.name, spec, desired, tags)

    def create(self, r: Resource) -> None:
        i = self.client("iam")
        i.create_role(
            Path=r.spec["Path"],
            RoleName=r.name,
            AssumeRolePolicyDocument=json.dumps(r.spec["AssumeRolePolicyDocument"]),
            Description="cloudq runtime role (cloudq deploy)",
            Tags=tag_pairs(r.spec["tags"]),
        )
        self._put_policy(r)

    def _put_policy(self, r: Resource) -> None:
        self.client("iam").put_role_policy(
            RoleName=r.name, PolicyName=iam.POLICY_NAME, PolicyDocument=json.dumps(r.spec["Policy"])
        )

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        i = self.client("iam")
        if "AssumeRolePolicyDocument" in changes:
            i.update_assume_role_policy(RoleName=r.name, PolicyDocument=json.dumps(r.spec["AssumeRolePolicyDocument"]))
        if "Policy" in changes:
            self._put_policy(r)
        if "tags" in changes:
            i.tag_role(RoleName=r.name, Tags=tag_pairs(r.spec["tags"]))

    def delete(self, r: Resource) -> None:
        i = self.client("iam")
        for name in i.list_role_policies(RoleName=r.name).get("PolicyNames", []):
            i.delete_role_policy(RoleName=r.name, PolicyName=name)
        missing(lambda: i.delete_role(RoleName=r.name))

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        i = self.client("iam")
        found = []
        for page in i.get_paginator("list_roles").paginate(PathPrefix=iam.ROLE_PATH):
            for role in page.get("Roles", []):
                tags = from_tag_pairs(i.list_role_tags(RoleName=role["RoleName"]).get("Tags"))
                if mine(tags, app, stage):
                    found.append(Resource(ROLE, role["RoleName"], {"tags": tags}, owner=owner(tags)))
        return found
