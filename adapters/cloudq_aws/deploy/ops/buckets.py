"""The S3 payload bucket as a deploy resource."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudq.deploy import Resource

from ... import resources as res
from .common import BUCKET, AWSOps, from_tag_pairs, live_resource, mine, missing, owner, tag_pairs


@dataclass
class BucketOps(AWSOps):
    kind = BUCKET
    candidates: list[str]

    def _bucket_tags(self, name: str) -> dict[str, str]:
        found = missing(lambda: self.client("s3").get_bucket_tagging(Bucket=name))
        return from_tag_pairs(found.get("TagSet") if found else None)

    def read(self, desired: Resource) -> Resource | None:
        """A bucket cloudq did not create is used as it is: never tagged, so never emptied or deleted
        (it may hold other data); it reads back as wanted."""
        if missing(lambda: self.client("s3").head_bucket(Bucket=desired.name)) is None:
            return None
        tags = self._bucket_tags(desired.name)
        if owner(tags) is None:
            return Resource(BUCKET, desired.name, dict(desired.spec), desired.create_only)
        return live_resource(BUCKET, desired.name, {}, desired, tags)

    def create(self, r: Resource) -> None:
        s3 = self.client("s3")
        s3.create_bucket(**res.bucket_definition(r.name, s3.meta.region_name))
        self.update(r, {"tags": None})

    def update(self, r: Resource, changes: Mapping[str, Any]) -> None:
        if "tags" in changes:
            tags = {**self._bucket_tags(r.name), **r.spec["tags"]}
            self.client("s3").put_bucket_tagging(Bucket=r.name, Tagging={"TagSet": tag_pairs(tags)})

    def delete(self, r: Resource) -> None:
        """Empty it (payloads only live as long as their messages), then delete it."""
        s3 = self.client("s3")
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

    def managed(self, app: str, stage: str, listed: Sequence[Resource]) -> list[Resource]:
        """Buckets are checked by name (the ones this app's configuration names): listing every
        bucket of an account and its tags would be slow and reach into other teams' data."""
        found = []
        for name in self.candidates:
            if missing(lambda n=name: self.client("s3").head_bucket(Bucket=n)) is None:  # type: ignore[misc]
                continue
            tags = self._bucket_tags(name)
            if mine(tags, app, stage):
                found.append(Resource(BUCKET, name, {"tags": tags}, owner=owner(tags)))
        return found
