"""What an app needs on AWS, as data: names, queue and function settings, and the checks that
refuse configurations AWS would reject or that could not work.

Names come from the same code the runtime uses (``SQSBroker.sqs_name``, the results URL), and
queue/table attributes from resources.py, which creation on first use also uses: deployed and
auto-created resources cannot drift apart. Nothing here talks to AWS.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cloudq.backends.urls import url_options
from cloudq.deploy import AppModel, QueueSpec
from cloudq.deploy.base import ownership_marks
from cloudq.deploy.checks import time_limit_problems
from cloudq.deploy.settings import queue_table

from .. import resources as res
from ..dynamodb import DynamoDBResultStore
from ..sqs import SQSBroker
from . import iam
from .deps import Target
from .schedules import ScheduleLayout, build_schedules, group_name

# Lambda + SQS service limits
LAMBDA_MAX_TIMEOUT_S = 900
LAMBDA_DEFAULT_TIMEOUT_S = 60
LAMBDA_DEFAULT_MEMORY_MB = 512
LAMBDA_TIMEOUT_MARGIN_S = 5  # over a task's time_limit: the handler settles the batch in it
VISIBILITY_PER_TIMEOUT = 6  # AWS: queue visibility >= 6x the function timeout
SQS_MAX_BATCH_SIZE = 10_000
SQS_FIFO_MAX_BATCH_SIZE = 10
SQS_MAX_BATCHING_WINDOW_S = 300
SQS_BATCH_NEEDS_WINDOW = 10  # batch sizes above this need a batching window of at least 1 s
MIN_MAX_CONCURRENCY = 2
MAX_MAX_CONCURRENCY = 1000
MAX_RECEIVE_COUNT = 1000
# receives that spend no attempt (released prefetch, records an invocation had no time for) plus
# one for the executor to record a lost worker's failure before SQS moves the message itself
RECEIVE_HEADROOM = 3
FUNCTION_NAME_MAX = 64
BUILD_DIR = "build/cloudq"  # where --emit writes the function archive, under the project folder
LOG_GROUP_PREFIX = "/aws/lambda/"
ROLE_NAME_MAX = 64
SCHEDULER_ROLE_SUFFIX = "-scheduler"

TAG_SEPARATOR = ":"  # tags cloudq:app, cloudq:stage, cloudq:managed-by
_TAG_VALUE = re.compile(r"[^\w .:/=+@-]")
_FUNCTION_NAME = re.compile(r"[^A-Za-z0-9_-]")
_ROLE_NAME = re.compile(r"[^\w+=,.@-]")


def tag_value(text: str) -> str:
    return _TAG_VALUE.sub("-", text)[:256]


def _fit(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[:limit]


@dataclass(frozen=True, slots=True)
class FunctionLayout:
    name: str
    timeout_s: int
    memory_mb: int
    batch_size: int
    batching_window_s: int
    max_concurrency: int | None

    @property
    def log_group(self) -> str:
        """Where Lambda writes the function's logs; deploy creates it, with a retention."""
        return f"{LOG_GROUP_PREFIX}{self.name}"


@dataclass(frozen=True, slots=True)
class QueueLayout:
    spec: QueueSpec
    sqs_name: str
    dead_name: str
    fifo: bool
    visibility_s: int
    explicit_visibility: bool
    wait_s: float
    max_receive_count: int
    function: FunctionLayout | None

    def attributes(self, dead_letter_arn: str) -> dict[str, str]:
        return res.queue_attributes(
            self.sqs_name, self.visibility_s, self.wait_s, dead_letter_arn, self.max_receive_count
        )

    def dead_attributes(self) -> dict[str, str]:
        return res.dead_letter_queue_attributes(self.dead_name)


@dataclass(frozen=True, slots=True)
class AWSLayout:
    model: AppModel
    broker: SQSBroker
    queues: tuple[QueueLayout, ...]
    table: str | None
    bucket: str | None
    object_prefixes: tuple[str, ...]  # key prefixes the runtimes write payloads under
    role_name: str
    schedules: tuple[ScheduleLayout, ...] = ()  # periodic tasks on EventBridge Scheduler
    schedule_problems: tuple[str, ...] = ()

    @property
    def scheduler_role_name(self) -> str:
        """The role EventBridge Scheduler sends runs with (only sqs:SendMessage, only their queues)."""
        return _fit(self.role_name, ROLE_NAME_MAX - len(SCHEDULER_ROLE_SUFFIX)) + SCHEDULER_ROLE_SUFFIX

    @property
    def schedule_group(self) -> str:
        return group_name(self.model)

    def scheduler_policy(self, arns: iam.Arns) -> dict[str, Any]:
        queues = sorted({s.queue_sqs_name for s in self.schedules})
        return iam.scheduler_policy([arns.queue(q) for q in queues])

    @property
    def archive_name(self) -> str:
        return _FUNCTION_NAME.sub("-", f"{self.model.app}-{self.model.stage}")

    @property
    def target(self) -> Target:
        """The functions' runtime and architecture, which the archive is built for."""
        options = self.model.options
        return Target(options.lambda_runtime, options.lambda_architecture)

    @property
    def log_retention_days(self) -> int:
        return self.model.options.log_retention_days

    @property
    def log_group_prefix(self) -> str:
        """Every function's log group starts with it (function names start with APP-STAGE-)."""
        return f"{LOG_GROUP_PREFIX}{self.archive_name}-"

    @property
    def functions(self) -> list[FunctionLayout]:
        return [q.function for q in self.queues if q.function is not None]

    @property
    def tags(self) -> dict[str, str]:
        """Tags on every resource: cloudq's ownership marks over the user's own."""
        return ownership_marks(tag_value(self.model.app), self.model.stage, self.model.tags, TAG_SEPARATOR)

    def principals(self) -> list[str]:
        principals = [iam.LAMBDA_PRINCIPAL] if self.functions else []
        if any(q.function is None for q in self.queues):
            principals.append(iam.CONTAINER_PRINCIPAL)
        return principals

    def policy(self, arns: iam.Arns) -> dict[str, Any]:
        queue_arns = [arns.queue(n) for q in self.queues for n in (q.sqs_name, q.dead_name)]
        groups = [arns.log_group(f.name) for f in self.functions]
        return iam.access_policy(
            queue_arns,
            arns.table(self.table) if self.table else None,
            [arns.objects(self.bucket, p) for p in self.object_prefixes] if self.bucket else [],
            [f"{g}:log-stream:*" for g in groups],
            arns.index(self.table, res.INDEX_NAME) if self.table else None,
        )

    def environment(self) -> dict[str, str]:
        """What a deployed function needs to build the same app: which app, which backends, and
        no creation on first use (deploy made everything; the role may not create)."""
        import json

        s = self.model.settings
        env = {
            "CLOUDQ_APP": self.model.app_path,
            "CLOUDQ_BROKER": self.model.broker_url,
            "CLOUDQ_RESULTS": self.model.results_url,
            "CLOUDQ_CREATE_MISSING": "false",
        }
        if s.broker_options:
            env["CLOUDQ_BROKER_OPTIONS"] = json.dumps(s.broker_options, sort_keys=True)
        if s.results_options:
            env["CLOUDQ_RESULTS_OPTIONS"] = json.dumps(s.results_options, sort_keys=True)
        return env

    def problems(self) -> list[str]:
        out: list[str] = []
        for q in self.queues:
            out.extend(queue_problems(q))
        out.extend(self.schedule_problems)
        return out


def _function(model: AppModel, queue: QueueSpec) -> FunctionLayout:
    o = queue.options
    if o.timeout is not None:
        timeout = math.ceil(o.timeout)
    elif queue.time_limit is not None:
        # the task's limit plus room to settle the batch, within Lambda's maximum when the task fits in it
        timeout = max(LAMBDA_DEFAULT_TIMEOUT_S, math.ceil(queue.time_limit) + LAMBDA_TIMEOUT_MARGIN_S)
        if queue.time_limit <= LAMBDA_MAX_TIMEOUT_S:
            timeout = min(timeout, LAMBDA_MAX_TIMEOUT_S)
    else:
        timeout = LAMBDA_DEFAULT_TIMEOUT_S
    name = _FUNCTION_NAME.sub("-", f"{model.app}-{model.stage}-{queue.name}")
    return FunctionLayout(
        name=_fit(name, FUNCTION_NAME_MAX),
        timeout_s=timeout,
        memory_mb=o.memory or LAMBDA_DEFAULT_MEMORY_MB,
        batch_size=o.batch_size or SQS_FIFO_MAX_BATCH_SIZE,
        batching_window_s=math.ceil(o.batching_window or 0),
        max_concurrency=o.max_concurrency,
    )


def _explicit_receive_count(model: AppModel) -> int | None:
    raw = url_options(model.broker_url, model.settings.broker_options).get("max_receive_count")
    return int(float(raw)) if raw is not None else None


def build_layout(model: AppModel) -> AWSLayout:
    broker = SQSBroker.from_url(model.broker_url, model.settings)
    app_receive_count = _explicit_receive_count(model)
    queues = []
    for spec in model.queues:
        name = broker.sqs_name(spec.name)
        function = _function(model, spec) if spec.runtime == "lambda" else None
        explicit = spec.options.visibility_timeout is not None
        if explicit:
            visibility = math.ceil(spec.options.visibility_timeout or 0)
        elif function is not None:
            visibility = VISIBILITY_PER_TIMEOUT * function.timeout_s
        else:
            visibility = math.ceil(broker.visibility_s)
        receive_count = (
            spec.options.max_deliveries or app_receive_count or min(spec.max_retries + 1 + RECEIVE_HEADROOM, 1000)
        )
        queues.append(
            QueueLayout(
                spec=spec,
                sqs_name=name,
                dead_name=res.dead_letter_queue_name(name),
                fifo=res.is_fifo(name),
                visibility_s=visibility,
                explicit_visibility=explicit,
                wait_s=broker.wait_s,
                max_receive_count=receive_count,
                function=function,
            )
        )
    table = None
    prefixes = [broker.claims.prefix] if broker.claims else []
    bucket = broker.claims.objects.bucket if broker.claims else None
    if urlsplit(model.results_url).scheme == "dynamodb":
        store = DynamoDBResultStore.from_url(model.results_url, model.settings)
        table = store.table
        if store.offload is not None:
            bucket = bucket or store.offload.objects.bucket
            if store.offload.objects.bucket == bucket:
                prefixes.append(store.offload.prefix)
    role = _ROLE_NAME.sub("-", f"cloudq-{model.app}-{model.stage}")
    schedules, problems = build_schedules(model, broker.sqs_name)
    return AWSLayout(
        model,
        broker,
        tuple(queues),
        table,
        bucket,
        tuple(prefixes),
        _fit(role, ROLE_NAME_MAX),
        tuple(schedules),
        tuple(problems),
    )


def queue_problems(q: QueueLayout) -> list[str]:
    """Why this queue's configuration cannot work, each with what to change."""
    name, o, fn = q.spec.name, q.spec.options, q.function
    where = queue_table(name)
    out: list[str] = []
    if q.spec.runtime == "push":
        out.append(
            f'queue {name!r}: runtime \'push\' is for Pub/Sub; on AWS use runtime = "lambda" or "container" in {where}'
        )
    if q.visibility_s > res.SQS_MAX_VISIBILITY_S:
        out.append(
            f"queue {name!r}: visibility timeout {q.visibility_s} s is above SQS's {res.SQS_MAX_VISIBILITY_S} s: "
            f"lower visibility_timeout in {where}"
        )
    if q.fifo and o.delayed:
        out.append(
            f"queue {name!r} is an SQS FIFO queue, which cannot delay single messages (countdown/eta): "
            f"route delayed tasks to a standard queue, or remove delayed = true from {where}"
        )
    if o.max_deliveries is not None and o.max_deliveries > MAX_RECEIVE_COUNT:
        out.append(
            f"queue {name!r}: max_deliveries {o.max_deliveries} is above SQS's maxReceiveCount limit of "
            f"{MAX_RECEIVE_COUNT}: lower it in {where}"
        )
    if fn is None:
        return out
    too_long = time_limit_problems(q.spec, "Lambda", LAMBDA_MAX_TIMEOUT_S, fn.timeout_s)
    out.extend(too_long)
    if fn.timeout_s > LAMBDA_MAX_TIMEOUT_S and not too_long:
        out.append(
            f"queue {name!r}: function timeout {fn.timeout_s} s is above Lambda's {LAMBDA_MAX_TIMEOUT_S} s: "
            f"lower timeout in {where}"
        )
    if q.visibility_s < VISIBILITY_PER_TIMEOUT * fn.timeout_s:
        out.append(
            f"queue {name!r}: visibility timeout {q.visibility_s} s is below {VISIBILITY_PER_TIMEOUT}x its Lambda "
            f"timeout ({fn.timeout_s} s), so SQS would deliver messages again while a batch still runs: set "
            f"visibility_timeout >= {VISIBILITY_PER_TIMEOUT * fn.timeout_s} (or remove it) in {where}"
        )
    limit = SQS_FIFO_MAX_BATCH_SIZE if q.fifo else SQS_MAX_BATCH_SIZE
    if fn.batch_size > limit:
        out.append(
            f"queue {name!r}: batch_size {fn.batch_size} is above the {limit} Lambda allows for "
            f"{'FIFO' if q.fifo else 'standard'} queues: lower it in {where}"
        )
    if q.fifo and fn.batching_window_s:
        out.append(
            f"queue {name!r} is FIFO, and Lambda takes no batching window for FIFO queues: "
            f"remove batching_window from {where}"
        )
    if fn.batching_window_s > SQS_MAX_BATCHING_WINDOW_S:
        out.append(
            f"queue {name!r}: batching_window {fn.batching_window_s} s is above Lambda's "
            f"{SQS_MAX_BATCHING_WINDOW_S} s: lower it in {where}"
        )
    if fn.batch_size > SQS_BATCH_NEEDS_WINDOW and fn.batching_window_s < 1 and not q.fifo:
        out.append(
            f"queue {name!r}: Lambda needs a batching window of at least 1 s for batch_size above "
            f"{SQS_BATCH_NEEDS_WINDOW}: set batching_window >= 1 in {where}"
        )
    if fn.max_concurrency is not None and not MIN_MAX_CONCURRENCY <= fn.max_concurrency <= MAX_MAX_CONCURRENCY:
        out.append(
            f"queue {name!r}: max_concurrency must be {MIN_MAX_CONCURRENCY}-{MAX_MAX_CONCURRENCY} for an SQS event "
            f"source, got {fn.max_concurrency}: change it in {where}"
        )
    return out
