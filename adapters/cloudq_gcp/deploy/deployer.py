"""``cloudq deploy`` on Google Cloud: per queue a topic and a pull or push subscription with its
dead-letter policy, and the dead-letter topic and subscription; everything labelled with the app
and stage.

Subscriptions start from the requests creation on first use makes (``pubsub_admin.
subscription_requests``), plus what only a deploy knows: the per-queue lease and attempts, push
endpoint and OIDC identity, a retry policy for push (the push handler answers a retry with 429 and
Pub/Sub's backoff spaces the attempts; pull queues get none, since cloudq schedules their retries
itself and a policy would also slow down messages given back at once), labels.

What the Pub/Sub emulator and this API cannot do -- the Firestore TTL policy, the Pub/Sub service
agent's rights on dead-letter topics, Cloud Run services -- is printed as exact gcloud commands.

Here: the Deployer protocol, reading live resources and applying steps; layout.py decides per queue,
checks.py refuses, specs.py translates subscriptions, notes.py prints the gcloud commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cloudq.deploy import AppModel, Resource, Step
from cloudq.deploy.base import owner_of, ownership_marks
from cloudq.errors import ConfigurationError

from ..errors import PUBSUB, translated
from ..options import PubSubOptions
from ..pubsub_admin import queue_paths, subscription_requests
from .checks import queue_problems
from .layout import label_value, layout
from .notes import notes
from .schedules import build_jobs, job_notes
from .specs import (
    KIND_ORDER,
    SUBSCRIPTION,
    TOPIC,
    changed_fields,
    read_subscription,
    short,
    subscription_request,
    subscription_spec,
)

PROVIDER = "gcp"
LABEL_SEPARATOR = "-"  # labels cloudq-app, cloudq-stage, cloudq-managed-by


class GCPDeployer:
    provider = PROVIDER
    scheduler = "Cloud Scheduler"

    def __init__(self, model: AppModel) -> None:
        self.model = model
        self.options = PubSubOptions.from_url(model.broker_url, model.settings)
        self.queues = layout(model, self.options)
        self.project = self.options.project
        self.jobs, self._job_problems = build_jobs(model, lambda queue: queue_paths(self.options, queue).topic)
        self._publisher: Any = None
        self._subscriber: Any = None

    def __repr__(self) -> str:
        return f"<GCPDeployer app={self.model.app} stage={self.model.stage} project={self.project}>"

    @property
    def labels(self) -> dict[str, str]:
        own = {label_value(k): label_value(v) for k, v in self.model.tags.items()}
        return ownership_marks(label_value(self.model.app), self.model.stage, own, LABEL_SEPARATOR)

    def _clients(self) -> tuple[Any, Any]:
        if self._publisher is None:
            with translated(PUBSUB, "creating the Pub/Sub admin clients"):
                from google.cloud import pubsub_v1  # type: ignore[import-untyped]

                self._publisher = pubsub_v1.PublisherClient()
                self._subscriber = pubsub_v1.SubscriberClient()
        return self._publisher, self._subscriber

    def _topic_path(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def _subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    # -- the Deployer protocol ---------------------------------------------------------------

    def problems(self) -> list[str]:
        return [p for q in self.queues for p in queue_problems(q)] + self._job_problems

    def desired(self) -> list[Resource]:
        labels = self.labels
        out: list[Resource] = []
        fixed = frozenset({"topic", "enable_message_ordering"})
        for q in self.queues:
            for topic in (q.paths.dead_topic, q.paths.topic):
                out.append(Resource(TOPIC, short(topic), {"labels": labels}))
            dead, main = subscription_requests(
                q.paths, ack_deadline=q.ack_deadline, max_delivery_attempts=q.max_delivery_attempts, ordered=q.ordered
            )
            out.append(Resource(SUBSCRIPTION, short(dead["name"]), subscription_spec(dead, labels, None), fixed))
            out.append(Resource(SUBSCRIPTION, short(main["name"]), subscription_spec(main, labels, q), fixed))
        return out

    def _owner(self, labels: Mapping[str, str]) -> tuple[str, str] | None:
        return owner_of(labels, LABEL_SEPARATOR)

    def _found(self, desired: Resource, spec: dict[str, Any]) -> Resource:
        labels = spec["labels"]
        spec["labels"] = {k: v for k, v in labels.items() if k in desired.spec["labels"]}
        return Resource(desired.kind, desired.name, spec, desired.create_only, self._owner(labels))

    def live(self, desired: Sequence[Resource]) -> dict[str, Resource]:
        from google.api_core.exceptions import NotFound

        publisher, subscriber = self._clients()
        found: dict[str, Resource] = {}
        for r in desired:
            with translated(PUBSUB, f"reading {r.kind} {r.name}"):
                try:
                    if r.kind == TOPIC:
                        topic = publisher.get_topic(request={"topic": self._topic_path(r.name)})
                        live = self._found(r, {"labels": dict(topic.labels)})
                    else:
                        sub = subscriber.get_subscription(request={"subscription": self._subscription_path(r.name)})
                        live = self._found(r, read_subscription(sub))
                except NotFound:
                    continue
            found[r.key] = live
        return found

    def managed(self) -> list[Resource]:
        publisher, subscriber = self._clients()
        mine = (label_value(self.model.app), self.model.stage)
        found: list[Resource] = []
        with translated(PUBSUB, f"listing cloudq's topics and subscriptions in project {self.project}"):
            for topic in publisher.list_topics(request={"project": f"projects/{self.project}"}):
                if self._owner(topic.labels) == mine:
                    found.append(Resource(TOPIC, short(topic.name), {"labels": dict(topic.labels)}, owner=mine))
            for sub in subscriber.list_subscriptions(request={"project": f"projects/{self.project}"}):
                if self._owner(sub.labels) == mine:
                    found.append(Resource(SUBSCRIPTION, short(sub.name), read_subscription(sub), owner=mine))
        # creation order: dead-letter topics and subscriptions first, so teardown removes them last
        return sorted(found, key=lambda r: (KIND_ORDER.index(r.kind), not r.name.endswith("-dead"), r.name))

    def notes(self) -> list[str]:
        location = self.model.options.scheduler_location
        return notes(self.model, self.project, self.queues) + job_notes(self.jobs, self.project, location)

    def info(self) -> list[str]:
        return []

    # -- applying ---------------------------------------------------------------------------

    def apply(self, step: Step) -> None:
        from google.api_core.exceptions import NotFound

        publisher, subscriber = self._clients()
        r = step.resource
        with translated(PUBSUB, f"{step.action} {r.kind} {r.name}"):
            if r.kind == TOPIC:
                topic = {"name": self._topic_path(r.name), "labels": r.spec.get("labels", {})}
                if step.action == "create":
                    publisher.create_topic(request=topic)
                elif step.action == "update":
                    publisher.update_topic(request={"topic": topic, "update_mask": {"paths": ["labels"]}})
                elif step.action == "delete":
                    try:
                        publisher.delete_topic(request={"topic": topic["name"]})
                    except NotFound:
                        pass
                return
            if step.action == "create":
                subscriber.create_subscription(request=subscription_request(r, self.project))
            elif step.action == "update":
                request = subscription_request(r, self.project)
                fields = changed_fields(step.changes)
                request = {k: v for k, v in request.items() if k in {"name", "topic", *fields}}
                subscriber.update_subscription(request={"subscription": request, "update_mask": {"paths": fields}})
            elif step.action == "delete":
                try:
                    subscriber.delete_subscription(request={"subscription": self._subscription_path(r.name)})
                except NotFound:
                    pass

    def emit(self, fmt: str) -> str:
        raise ConfigurationError(
            f"the Google Cloud deployer has no {fmt!r} export yet: run `cloudq deploy --dry-run` for the plan"
        )
