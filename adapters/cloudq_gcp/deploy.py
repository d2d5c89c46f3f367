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
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from cloudq.backends.urls import url_options
from cloudq.deploy import AppModel, QueueSpec, Resource, Step
from cloudq.deploy.base import owner_of, ownership_marks
from cloudq.deploy.checks import time_limit_problems
from cloudq.deploy.settings import queue_table
from cloudq.errors import ConfigurationError

from .errors import PUBSUB, translated
from .options import (
    MAX_ACK_DEADLINE_S,
    MAX_DELIVERY_ATTEMPTS,
    MIN_ACK_DEADLINE_S,
    MIN_DELIVERY_ATTEMPTS,
    FirestoreOptions,
    PubSubOptions,
)
from .pubsub_admin import QueuePaths, queue_paths, subscription_requests
from .push_handler import MAX_PUSH_DEADLINE_S

PROVIDER = "gcp"
TOPIC = "pubsub.topic"
SUBSCRIPTION = "pubsub.subscription"
KIND_ORDER = (TOPIC, SUBSCRIPTION)
LABEL_SEPARATOR = "-"  # labels cloudq-app, cloudq-stage, cloudq-managed-by
PUSH_DEADLINE_MARGIN_S = 10  # over a task's time_limit: the handler answers after the task ends
MAX_RETRY_BACKOFF_S = 600
RECEIVE_HEADROOM = 3  # as on SQS: attempts spent without running (given back) + one to record a lost worker
PUSH_ENTRY = "cloudq_gcp.push_entry:application"
_LABEL = re.compile(r"[^a-z0-9_-]")
_UPDATABLE = (
    "ack_deadline_seconds",
    "dead_letter_policy",
    "retry_policy",
    "push_config",
    "labels",
    "expiration_policy",
)


def label_value(text: str) -> str:
    return _LABEL.sub("-", text.lower())[:63]


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class QueueLayout:
    spec: QueueSpec
    paths: QueuePaths
    ordered: bool
    ack_deadline: int
    max_delivery_attempts: int  # 0: no dead-letter policy (attempts counted in the message)
    push_endpoint: str | None
    service_account: str | None


def _explicit_attempts(model: AppModel) -> int | None:
    raw = url_options(model.broker_url, model.settings.broker_options).get("max_delivery_attempts")
    return int(float(raw)) if raw is not None else None


def _layout(model: AppModel, options: PubSubOptions) -> list[QueueLayout]:
    app_attempts = _explicit_attempts(model)
    out = []
    for spec in model.queues:
        o = spec.options
        push = spec.runtime == "push"
        if o.visibility_timeout is not None:
            deadline = math.ceil(o.visibility_timeout)
        elif push and o.timeout is not None:
            deadline = math.ceil(o.timeout)
        elif push and spec.time_limit is not None:
            deadline = max(options.ack_deadline, math.ceil(spec.time_limit) + PUSH_DEADLINE_MARGIN_S)
        else:
            deadline = options.ack_deadline
        if o.max_deliveries is not None:
            attempts = o.max_deliveries
        elif app_attempts is not None:
            attempts = app_attempts
        elif spec.max_retries + 1 > MAX_DELIVERY_ATTEMPTS:
            attempts = spec.max_retries + 1  # refused by the checks, with what to change
        else:
            # Pub/Sub's floor is 5; the executor dead-letters exhausted retries itself before that
            attempts = min(max(spec.max_retries + 1 + RECEIVE_HEADROOM, MIN_DELIVERY_ATTEMPTS), MAX_DELIVERY_ATTEMPTS)
        out.append(
            QueueLayout(
                spec=spec,
                paths=queue_paths(options, spec.name),
                ordered=options.is_ordered(spec.name),
                ack_deadline=deadline,
                max_delivery_attempts=attempts,
                push_endpoint=o.push_endpoint if push else None,
                service_account=o.service_account if push else None,
            )
        )
    return out


def queue_problems(q: QueueLayout) -> list[str]:
    name, o = q.spec.name, q.spec.options
    where = queue_table(name)
    out: list[str] = []
    if q.spec.runtime == "lambda":
        out.append(f'queue {name!r}: runtime \'lambda\' is for AWS; on Pub/Sub use "push" or "container" in {where}')
    if not MIN_ACK_DEADLINE_S <= q.ack_deadline <= MAX_ACK_DEADLINE_S:
        out.append(
            f"queue {name!r}: ack deadline {q.ack_deadline} s is outside Pub/Sub's {MIN_ACK_DEADLINE_S}-"
            f"{MAX_ACK_DEADLINE_S} s: change visibility_timeout (or timeout) in {where}"
        )
    if q.max_delivery_attempts and not MIN_DELIVERY_ATTEMPTS <= q.max_delivery_attempts <= MAX_DELIVERY_ATTEMPTS:
        if o.max_deliveries is not None:
            fix = f"set max_deliveries to {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS} in {where}"
        else:
            fix = (
                f"lower the max_retries of its tasks to {MAX_DELIVERY_ATTEMPTS - 1} or less, or count attempts in "
                "the message instead with the broker option max_delivery_attempts=0"
            )
        out.append(
            f"queue {name!r}: {q.max_delivery_attempts} delivery attempts is outside the {MIN_DELIVERY_ATTEMPTS}-"
            f"{MAX_DELIVERY_ATTEMPTS} a Pub/Sub dead-letter policy allows: {fix}"
        )
    if q.spec.runtime != "push":
        return out
    out.extend(time_limit_problems(q.spec, "Pub/Sub push", MAX_PUSH_DEADLINE_S, q.ack_deadline))
    endpoint = q.push_endpoint or ""
    parts = urlsplit(endpoint)
    local = parts.hostname in {"localhost", "127.0.0.1"}
    if not endpoint or parts.scheme not in {"https", "http"} or (parts.scheme == "http" and not local):
        out.append(
            f'queue {name!r} runs on push and needs push_endpoint = "https://..." (the service\'s URL, e.g. from '
            f"`gcloud run services describe SERVICE --format='value(status.url)'`) in {where}"
        )
    return out


def _subscription_spec(request: Mapping[str, Any], labels: dict[str, str], q: QueueLayout | None) -> dict[str, Any]:
    """A CreateSubscription request in the plan's normal form, plus what only a deploy adds."""
    policy = request.get("dead_letter_policy")
    spec: dict[str, Any] = {
        "topic": _short(request["topic"]),
        "ack_deadline_seconds": request["ack_deadline_seconds"],
        "enable_message_ordering": bool(request.get("enable_message_ordering", False)),
        "dead_letter_policy": (
            {
                "dead_letter_topic": _short(policy["dead_letter_topic"]),
                "max_delivery_attempts": policy["max_delivery_attempts"],
            }
            if policy
            else None
        ),
        "retry_policy": None,
        "push_endpoint": None,
        "push_service_account": None,
        "expires": "never" if request.get("expiration_policy") == {} else "default",
        "labels": labels,
    }
    if q is not None and q.push_endpoint:
        spec["push_endpoint"] = q.push_endpoint
        spec["push_service_account"] = q.service_account
        low = min(max(q.spec.min_backoff, 0), MAX_RETRY_BACKOFF_S)
        high = min(max(q.spec.max_backoff, low), MAX_RETRY_BACKOFF_S)
        spec["retry_policy"] = {"minimum_backoff_s": math.ceil(low), "maximum_backoff_s": math.ceil(high)}
    return spec


def _read_subscription(found: Any) -> dict[str, Any]:
    policy = found.dead_letter_policy
    retry = found.retry_policy if "retry_policy" in found else None
    push = found.push_config
    expiration = found.expiration_policy if "expiration_policy" in found else None
    return {
        "topic": _short(found.topic),
        "ack_deadline_seconds": found.ack_deadline_seconds,
        "enable_message_ordering": bool(found.enable_message_ordering),
        "dead_letter_policy": (
            {
                "dead_letter_topic": _short(policy.dead_letter_topic),
                "max_delivery_attempts": policy.max_delivery_attempts,
            }
            if policy.dead_letter_topic
            else None
        ),
        "retry_policy": (
            {
                "minimum_backoff_s": int(_seconds(retry.minimum_backoff)),
                "maximum_backoff_s": int(_seconds(retry.maximum_backoff)),
            }
            if retry is not None
            else None
        ),
        "push_endpoint": push.push_endpoint or None,
        "push_service_account": push.oidc_token.service_account_email or None if push.push_endpoint else None,
        "expires": "never" if expiration is not None and not _seconds(expiration.ttl) else "default",
        "labels": dict(found.labels),
    }


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(getattr(value, "seconds", 0) or 0)


class GCPDeployer:
    provider = PROVIDER

    def __init__(self, model: AppModel) -> None:
        self.model = model
        self.options = PubSubOptions.from_url(model.broker_url, model.settings)
        self.queues = _layout(model, self.options)
        self.project = self.options.project
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
        return [p for q in self.queues for p in queue_problems(q)]

    def desired(self) -> list[Resource]:
        labels = self.labels
        out: list[Resource] = []
        fixed = frozenset({"topic", "enable_message_ordering"})
        for q in self.queues:
            for topic in (q.paths.dead_topic, q.paths.topic):
                out.append(Resource(TOPIC, _short(topic), {"labels": labels}))
            dead, main = subscription_requests(
                q.paths, ack_deadline=q.ack_deadline, max_delivery_attempts=q.max_delivery_attempts, ordered=q.ordered
            )
            out.append(Resource(SUBSCRIPTION, _short(dead["name"]), _subscription_spec(dead, labels, None), fixed))
            out.append(Resource(SUBSCRIPTION, _short(main["name"]), _subscription_spec(main, labels, q), fixed))
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
                        live = self._found(r, _read_subscription(sub))
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
                    found.append(Resource(TOPIC, _short(topic.name), {"labels": dict(topic.labels)}, owner=mine))
            for sub in subscriber.list_subscriptions(request={"project": f"projects/{self.project}"}):
                if self._owner(sub.labels) == mine:
                    found.append(Resource(SUBSCRIPTION, _short(sub.name), _read_subscription(sub), owner=mine))
        # creation order: dead-letter topics and subscriptions first, so teardown removes them last
        return sorted(found, key=lambda r: (KIND_ORDER.index(r.kind), not r.name.endswith("-dead"), r.name))

    def notes(self) -> list[str]:
        notes: list[str] = []
        dead = [q for q in self.queues if q.max_delivery_attempts]
        if dead:
            agent = (
                f"serviceAccount:service-$(gcloud projects describe {self.project} "
                "--format='value(projectNumber)')@gcp-sa-pubsub.iam.gserviceaccount.com"
            )
            notes.append("# let Pub/Sub move undeliverable messages to the dead-letter topics:")
            for q in dead:
                notes.append(
                    f"gcloud pubsub topics add-iam-policy-binding {_short(q.paths.dead_topic)} --project={self.project} "
                    f'--member="{agent}" --role=roles/pubsub.publisher'
                )
                notes.append(
                    f"gcloud pubsub subscriptions add-iam-policy-binding {_short(q.paths.subscription)} "
                    f'--project={self.project} --member="{agent}" --role=roles/pubsub.subscriber'
                )
        notes.extend(self._push_notes())
        notes.extend(self._results_notes())
        if self.model.schedules:
            notes.append("# periodic tasks are not deployed yet (Cloud Scheduler)")
        return notes

    def _push_notes(self) -> list[str]:
        notes: list[str] = []
        for q in self.queues:
            if q.spec.runtime != "push":
                continue
            service = re.sub(r"[^a-z0-9-]", "-", f"{self.model.app}-{self.model.stage}-{q.spec.name}".lower())[:49]
            env = ",".join(
                [
                    f"CLOUDQ_APP={self.model.app_path}",
                    f"CLOUDQ_BROKER={self.model.broker_url}",
                    f"CLOUDQ_RESULTS={self.model.results_url}",
                    "CLOUDQ_CREATE_MISSING=false",
                    f"CLOUDQ_PUSH_AUDIENCE={q.push_endpoint or ''}",
                    f"CLOUDQ_PUSH_SERVICE_ACCOUNT={q.service_account or ''}",
                ]
            )
            notes.append(f"# queue {q.spec.name!r} is pushed to a Cloud Run service (cloudq does not deploy it):")
            notes.append(
                f"gcloud run deploy {service} --source . --project={self.project} --no-allow-unauthenticated "
                f'--timeout={q.ack_deadline} --set-env-vars="{env}" '
                f"--set-build-env-vars=GOOGLE_ENTRYPOINT='gunicorn --bind :$PORT --threads 8 {PUSH_ENTRY}'"
            )
            if q.service_account:
                notes.append(
                    f"gcloud run services add-iam-policy-binding {service} --project={self.project} "
                    f"--member=serviceAccount:{q.service_account} --role=roles/run.invoker"
                )
        return notes

    def _results_notes(self) -> list[str]:
        if urlsplit(self.model.results_url).scheme != "firestore":
            return []
        from .firestore_records import EXPIRES_AT

        results = FirestoreOptions.from_url(self.model.results_url, self.model.settings)
        group = results.collection.rsplit("/", 1)[-1]
        database = "" if results.database == "(default)" else f" --database={results.database}"
        return [
            "# let Firestore delete expired results (TTL policies are not in the emulator or the client API):",
            f"gcloud firestore fields ttls update {EXPIRES_AT} --collection-group={group} --enable-ttl "
            f"--project={results.project}{database}",
        ]

    def info(self) -> list[str]:
        return []

    # -- applying ---------------------------------------------------------------------------

    def _subscription_request(self, r: Resource) -> dict[str, Any]:
        s = r.spec
        request: dict[str, Any] = {
            "name": self._subscription_path(r.name),
            "topic": self._topic_path(s["topic"]),
            "ack_deadline_seconds": s["ack_deadline_seconds"],
            "enable_message_ordering": s["enable_message_ordering"],
            "labels": s["labels"],
            "expiration_policy": {} if s["expires"] == "never" else None,
            "dead_letter_policy": None,
            "retry_policy": None,
            "push_config": {},
        }
        policy = s["dead_letter_policy"]
        if policy:
            request["dead_letter_policy"] = {
                "dead_letter_topic": self._topic_path(policy["dead_letter_topic"]),
                "max_delivery_attempts": policy["max_delivery_attempts"],
            }
        retry = s["retry_policy"]
        if retry:
            request["retry_policy"] = {
                "minimum_backoff": timedelta(seconds=retry["minimum_backoff_s"]),
                "maximum_backoff": timedelta(seconds=retry["maximum_backoff_s"]),
            }
        if s["push_endpoint"]:
            push: dict[str, Any] = {"push_endpoint": s["push_endpoint"]}
            if s["push_service_account"]:
                push["oidc_token"] = {
                    "service_account_email": s["push_service_account"],
                    "audience": s["push_endpoint"],
                }
            request["push_config"] = push
        return {k: v for k, v in request.items() if v is not None}

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
                subscriber.create_subscription(request=self._subscription_request(r))
            elif step.action == "update":
                request = self._subscription_request(r)
                fields = self._changed_fields(step.changes)
                request = {k: v for k, v in request.items() if k in {"name", "topic", *fields}}
                subscriber.update_subscription(request={"subscription": request, "update_mask": {"paths": fields}})
            elif step.action == "delete":
                try:
                    subscriber.delete_subscription(request={"subscription": self._subscription_path(r.name)})
                except NotFound:
                    pass

    @staticmethod
    def _changed_fields(changes: Mapping[str, Any]) -> list[str]:
        renamed = {
            "push_endpoint": "push_config",
            "push_service_account": "push_config",
            "expires": "expiration_policy",
        }
        return sorted({renamed.get(k, k) for k in changes} & set(_UPDATABLE))

    def emit(self, fmt: str) -> str:
        raise ConfigurationError(
            f"the Google Cloud deployer has no {fmt!r} export yet: run `cloudq deploy --dry-run` for the plan"
        )
