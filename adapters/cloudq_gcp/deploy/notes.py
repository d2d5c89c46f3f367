"""What the Pub/Sub API and its emulator cannot set up, printed by ``cloudq deploy`` as exact gcloud
commands: the Pub/Sub service agent's rights on dead-letter topics, Cloud Run services for push
queues, the Firestore TTL policy on results."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from cloudq.deploy import AppModel

from ..options import FirestoreOptions
from .layout import QueueLayout
from .specs import short

PUSH_ENTRY = "cloudq_gcp.push_entry:application"


def notes(model: AppModel, project: str, queues: list[QueueLayout]) -> list[str]:
    """Every note of the deploy, in the order it prints them."""
    notes: list[str] = []
    dead = [q for q in queues if q.max_delivery_attempts]
    if dead:
        agent = (
            f"serviceAccount:service-$(gcloud projects describe {project} "
            "--format='value(projectNumber)')@gcp-sa-pubsub.iam.gserviceaccount.com"
        )
        notes.append("# let Pub/Sub move undeliverable messages to the dead-letter topics:")
        for q in dead:
            notes.append(
                f"gcloud pubsub topics add-iam-policy-binding {short(q.paths.dead_topic)} --project={project} "
                f'--member="{agent}" --role=roles/pubsub.publisher'
            )
            notes.append(
                f"gcloud pubsub subscriptions add-iam-policy-binding {short(q.paths.subscription)} "
                f'--project={project} --member="{agent}" --role=roles/pubsub.subscriber'
            )
    notes.extend(push_notes(model, project, queues))
    notes.extend(results_notes(model))
    return notes


def push_notes(model: AppModel, project: str, queues: list[QueueLayout]) -> list[str]:
    notes: list[str] = []
    for q in queues:
        if q.spec.runtime != "push":
            continue
        service = re.sub(r"[^a-z0-9-]", "-", f"{model.app}-{model.stage}-{q.spec.name}".lower())[:49]
        env = ",".join(
            [
                f"CLOUDQ_APP={model.app_path}",
                f"CLOUDQ_BROKER={model.broker_url}",
                f"CLOUDQ_RESULTS={model.results_url}",
                "CLOUDQ_CREATE_MISSING=false",
                f"CLOUDQ_PUSH_AUDIENCE={q.push_endpoint or ''}",
                f"CLOUDQ_PUSH_SERVICE_ACCOUNT={q.service_account or ''}",
            ]
        )
        notes.append(f"# queue {q.spec.name!r} is pushed to a Cloud Run service (cloudq does not deploy it):")
        notes.append(
            f"gcloud run deploy {service} --source . --project={project} --no-allow-unauthenticated "
            f'--timeout={q.ack_deadline} --set-env-vars="{env}" '
            f"--set-build-env-vars=GOOGLE_ENTRYPOINT='gunicorn --bind :$PORT --threads 8 {PUSH_ENTRY}'"
        )
        if q.service_account:
            notes.append(
                f"gcloud run services add-iam-policy-binding {service} --project={project} "
                f"--member=serviceAccount:{q.service_account} --role=roles/run.invoker"
            )
    return notes


def results_notes(model: AppModel) -> list[str]:
    if urlsplit(model.results_url).scheme != "firestore":
        return []
    from ..firestore_records import EXPIRES_AT, UPDATED_AT, WORKERS_SUFFIX

    results = FirestoreOptions.from_url(model.results_url, model.settings)
    group = results.collection.rsplit("/", 1)[-1]
    where = f"--project={results.project}" + (
        "" if results.database == "(default)" else f" --database={results.database}"
    )
    return [
        "# let Firestore delete expired results and worker presence records (TTL policies are not in the "
        "emulator or the client API):",
        *(
            f"gcloud firestore fields ttls update {EXPIRES_AT} --collection-group={g} --enable-ttl {where}"
            for g in (group, group + WORKERS_SUFFIX)
        ),
        "# `cloudq inspect recent --state ...` queries state + updated_at: the composite index it needs "
        "(the emulator needs none):",
        f"gcloud firestore indexes composite create --collection-group={group} --query-scope=COLLECTION "
        f"--field-config=field-path=state,order=ascending --field-config=field-path={UPDATED_AT},order=descending "
        f"{where}",
    ]
