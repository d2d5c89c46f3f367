"""AWS Lambda handler for SQS event source mappings: ``handler = make_handler(app)``.

Every record runs through the app's executor, as in the container worker; this module only turns
the outcomes into a partial batch response (the mapping needs ``ReportBatchItemFailures``) plus the
few SQS calls the Lambda service does not make itself:

* Ack: reported done (the Lambda service deletes it; an S3 claim-check payload is deleted here);
* RetryIn(d): visibility set to d, then reported failed, so it returns after its backoff;
* Requeue(m): m is sent, then reported done; DeadLetter(r): moved to the dead-letter queue with r,
  then reported done;
* revoked (``app.control.revoke``): reported done without running. One batched read of the
  batch's result records finds them (``runtime/revocations.py``): 1 BatchGetItem per 10 records;
* not started: visibility 0 and reported failed, so it returns at once. A record is not started
  when the invocation could not finish it (its task's ``time_limit``, else an estimate, plus a
  safety margin, against ``context.get_remaining_time_in_millis()``), or when an earlier record of
  its FIFO message group failed (order is kept; other groups go on).

All visibility changes of a batch go in one ChangeMessageVisibilityBatch per 10 records.
The first invocation of a function instance fires ``worker_init`` and ``worker_ready`` (its cold
start, with every module imported); ``worker_shutdown`` is not fired: Lambda freezes and ends an
instance without telling the function.
Importing this module creates no client: the app builds its broker and result store on first use
and keeps them for the container's later invocations.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from cloudq.claimcheck import ClaimCheckMissing
from cloudq.errors import ConfigurationError
from cloudq.interfaces import Delivery, ResultRecord
from cloudq.runtime.executor import Ack, DeadLetter, Outcome, RetryIn
from cloudq.runtime.lifecycle import Lifecycle
from cloudq.runtime.presence import InstancePresence, Tracker
from cloudq.runtime.ratelimit import RateLimits, later
from cloudq.runtime.requirements import BrokerRequirement
from cloudq.runtime.revocations import RevokeCheck, task_id_of
from cloudq.runtime.settle import send_followups, settle

from .. import resources as res
from .records import InvalidRecord, queue_name, received_message, records

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from cloudq.app import App
    from cloudq.observability.metrics import EMFBatch

    from ..sqs import SQSBroker, SQSQueue

log = logging.getLogger("cloudq.lambda")

DEFAULT_SAFETY_MARGIN_S = 1.0  # left at the end of an invocation to settle the batch with SQS
DEFAULT_TASK_ESTIMATE_S = 1.0  # assumed run time of a task without time_limit until one runs longer
TASK_ATTRIBUTE = "task"  # message attribute cloudq producers set to the task name
NEEDS = BrokerRequirement("the Lambda handler", "reads SQS events", "sqs", "sqs://", "SQS")

Response = dict[str, list[dict[str, str]]]


class LambdaContext(Protocol):
    """The part of Lambda's context object the handler uses."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(slots=True)
class _Item:
    """One record of the batch and what became of it."""

    message_id: str
    delivery: Delivery | None = None  # None: the record could not be read
    group: str | None = None  # FIFO message group
    outcome: Outcome | None = None  # None: not run
    revoked: ResultRecord | None = None  # its REVOKED record, found before the batch ran
    why: str = ""  # why it was not run
    later: float = 0.0  # not run: seconds until it may run (its visibility timeout)


class LambdaHandler:
    """The callable Lambda invokes with ``(event, context)``; one per app, reused across invocations."""

    def __init__(
        self,
        app: App,
        *,
        concurrency: int = 1,
        safety_margin_s: float = DEFAULT_SAFETY_MARGIN_S,
        task_estimate_s: float = DEFAULT_TASK_ESTIMATE_S,
    ) -> None:
        NEEDS.check_url(app)
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        if safety_margin_s < 0 or task_estimate_s < 0:
            raise ConfigurationError("safety_margin_s and task_estimate_s must be >= 0 seconds")
        self.app = app
        self.executor = app.executor
        self.revocations = RevokeCheck(app)
        self.rate_limits = RateLimits(app)  # Celery's rate_limit, per function instance
        self._limited = False  # whether any task has a rate_limit: asked once per invocation
        self.concurrency = concurrency
        self.safety_margin_s = safety_margin_s
        self.task_estimate_s = task_estimate_s
        self._queues: dict[str, SQSQueue] = {}  # event source ARN -> queue
        self._unresolved: set[str] = set()  # ARNs whose queue was not looked up yet (see _queue)
        self._estimates: dict[str, float] = {}  # task name -> seconds it may take
        self._learning: set[str] = set()  # tasks without time_limit: estimated from their runs
        self._pool: ThreadPoolExecutor | None = None
        self.lifecycle = Lifecycle(self)  # worker_init + worker_ready at the first invocation
        self.tracker = Tracker()  # running now and outcome counts, for this instance's presence record
        node = f"lambda@{os.environ.get('AWS_LAMBDA_FUNCTION_NAME') or socket.gethostname()}"
        self.presence = InstancePresence(app, "lambda", node, concurrency, self.tracker)
        self.metrics: EMFBatch | None = None  # printed after each invocation
        if app.settings.metrics_emf:  # its module (and the worker's it uses) loads only when asked for
            from cloudq.observability.metrics import EMFBatch

            self.metrics = EMFBatch()
            self.tracker.observers.append(self.metrics)

    def __repr__(self) -> str:
        return f"<LambdaHandler app={self.app.name} concurrency={self.concurrency}>"

    # -- one invocation ---------------------------------------------------------------------------

    def __call__(self, event: Mapping[str, Any], context: LambdaContext | None = None) -> Response:
        self.lifecycle.start()  # once per function instance; worker_shutdown: Lambda gives no hook
        batch = records(event)
        if not batch:
            return {"batchItemFailures": []}
        broker = self._broker()
        self._limited = self.rate_limits.active()
        items = self._read(broker, batch)
        self._check_revoked(items)
        if self.concurrency > 1 and len(items) > 1:
            self._run_lanes(items, context)
        else:
            blocked: set[str] = set()
            for item in items:
                self._run(item, context, blocked)
        failed = self._settle(broker, items)
        if self.metrics is not None:
            self.metrics.flush()
        if log.isEnabledFor(logging.INFO):
            not_run = sum(1 for i in items if i.outcome is None)
            log.info(
                "event=batch records=%d failed=%d not_started=%d remaining_ms=%s",
                len(items),
                len(failed),
                not_run,
                context.get_remaining_time_in_millis() if context is not None else "-",
            )
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    def _broker(self) -> SQSBroker:
        from ..sqs import SQSBroker

        return NEEDS.broker(self.app, SQSBroker)

    def _read(self, broker: SQSBroker, batch: list[dict[str, Any]]) -> list[_Item]:
        """Deliveries from the records, made by the SQS broker's own code (claim-check payloads
        are fetched only when a record is started)."""
        now = time.monotonic()
        queues = self._queues
        items: list[_Item] = []
        for record in batch:
            item = _Item(record["messageId"])
            items.append(item)
            try:
                arn = record.get("eventSourceARN")
                queue = queues.get(arn) if type(arn) is str else None
                if queue is None:
                    queue = self._queue(broker, arn)
                item.delivery = broker.delivery(queue, received_message(record), now, fetch=False)
            except Exception as exc:
                log.error("SQS record %s cannot be read, reporting it failed: %s: %s", item.message_id, _name(exc), exc)
                item.group = _group_of(record)  # FIFO: the rest of its group must wait too
                continue
            if queue.fifo:
                item.group = item.delivery.receipt.group_id
        return items

    def _check_revoked(self, items: list[_Item]) -> None:
        """One read of the batch's records; the revoked ones are acked without running."""
        revoked = self.revocations.revoked([i.delivery for i in items if i.delivery is not None])
        for item in items:
            if revoked and item.delivery is not None:
                item.revoked = revoked.get(task_id_of(item.delivery) or "")

    def _queue(self, broker: SQSBroker, arn: object) -> SQSQueue:
        """The queue of an ARN, first without asking SQS: its name says what a delivery needs
        (the app's queue name; FIFO from the ``.fifo`` suffix SQS requires). Its URL, redrive
        target and size limit are looked up (GetQueueUrl, GetQueueAttributes: the broker's own
        ``queue``) only when a batch needs an SQS call (``_resolve``), so a cold start whose batch
        all succeeds creates no SQS client and makes no SQS request."""
        name = queue_name(arn) if isinstance(arn, str) else None
        if name is None or not isinstance(arn, str):
            raise InvalidRecord(f"eventSourceARN {arn!r} is not an SQS queue ARN")
        from ..sqs import SQSQueue

        own = self._queue_name(broker, name)
        found = self._queues[arn] = SQSQueue(
            own, name, "", res.is_fifo(name), res.SQS_MAX_MESSAGE_BYTES, res.dead_letter_queue_name(name)
        )
        self._unresolved.add(arn)
        return found

    def _resolve(self, broker: SQSBroker, items: list[_Item]) -> None:
        """Look up the queues not looked up yet, and point the batch's deliveries at them: done
        before any SQS call of the batch (the broker acts on a delivery through its queue)."""
        real: dict[int, SQSQueue] = {}
        for arn in list(self._unresolved):
            provisional = self._queues[arn]
            found = self._queues[arn] = broker.queue(provisional.name)
            real[id(provisional)] = found
            self._unresolved.discard(arn)
        for item in items:
            d = item.delivery
            queue = real.get(id(d.receipt.queue)) if d is not None else None
            if d is not None and queue is not None:
                item.delivery = replace(d, receipt=replace(d.receipt, queue=queue))

    def _queue_name(self, broker: SQSBroker, sqs_name: str) -> str:
        """The app's name for the SQS queue a record came from."""
        for name in self.app.queues():
            if broker.sqs_name(name) == sqs_name:
                return name
        if sqs_name.startswith(broker.prefix):
            bare = sqs_name[len(broker.prefix) :]
            for name in (bare, bare.removesuffix(".fifo")):
                if name and broker.sqs_name(name) == sqs_name:
                    return name
        raise ConfigurationError(
            f"records come from SQS queue {sqs_name!r}, which is not a queue of this broker (prefix {broker.prefix!r})"
        )

    # -- running ----------------------------------------------------------------------------------

    def _run(self, item: _Item, context: LambdaContext | None, blocked: set[str]) -> None:
        delivery = item.delivery
        if delivery is None:
            if item.group is not None:
                blocked.add(item.group)
            return
        if item.group is not None and item.group in blocked:
            item.why = "an earlier record of its FIFO message group failed"
            return
        name = delivery.attributes.get(TASK_ATTRIBUTE, "")
        if context is not None:
            need = self._estimate(name) + self.safety_margin_s
            left = context.get_remaining_time_in_millis() / 1000.0
            if left < need:
                item.why = f"{left:.3f}s left in the invocation, the task may need {need:.3f}s"
                if item.group is not None:
                    blocked.add(item.group)
                return
        if (
            self._limited
            and item.revoked is None
            and self._rate_limited(item, None if context is None else left - need)
        ):
            if item.group is not None:
                blocked.add(item.group)
            return
        started = time.monotonic()
        item.outcome = outcome = self.tracker.run(lambda d: self._execute(d, item.revoked), delivery)
        self.presence.maybe_beat()  # at most once per presence_interval, whatever the batch size
        if name in self._learning:  # no time_limit: expect as long as its longest run so far
            took = time.monotonic() - started
            if took > self._estimates[name]:
                self._estimates[name] = took
        if item.group is not None and isinstance(outcome, RetryIn):
            blocked.add(item.group)

    def _rate_limited(self, item: _Item, within_s: float | None) -> bool:
        """rate_limit, per function instance: wait for the task's token while the record stays
        leased, as long as the invocation allows. Past that it is sent again, delayed until its
        token (its delivery count is kept); a FIFO or claim-checked record instead returns when
        due (that costs it a delivery: a new message could not keep its group order or payload)."""
        delivery = item.delivery
        assert delivery is not None
        pause = self.rate_limits.wait(delivery, within_s)
        if not pause:
            return False
        if item.group is None and delivery.receipt.claim is None:
            item.outcome = later(delivery, pause, self._broker().limits.max_delay_s)
        else:
            item.why, item.later = f"its rate_limit has no run for it in this invocation (due in {pause:.3f}s)", pause
        return True

    def _execute(self, delivery: Delivery, revoked: ResultRecord | None) -> Outcome:
        try:
            if delivery.receipt.claim is not None:
                delivery = self._with_payload(delivery)
                # its task id was in S3: checked now, one read for this rare record
                revoked = self.revocations.revoked([delivery]).get(task_id_of(delivery) or "")
            if revoked is not None:
                return self.executor.revoked(delivery, revoked)
            return self.executor.execute(delivery)
        except _Lost as lost:
            return DeadLetter(str(lost))
        except Exception as exc:  # e.g. its S3 payload cannot be fetched now: bounded like the executor's own
            return self.executor.internal_error(delivery, exc)

    def _with_payload(self, delivery: Delivery) -> Delivery:
        broker = self._broker()
        try:
            return replace(delivery, body=broker.claims_get(delivery.receipt.claim))
        except ClaimCheckMissing as exc:
            log.warning("message %s lost its S3 payload: dead-lettering it", delivery.message_id)
            raise _Lost(f"ClaimCheckMissing: {exc} (already processed, or removed by a lifecycle rule)") from None

    def _estimate(self, name: str) -> float:
        found = self._estimates.get(name)
        if found is None:
            task = self.app.tasks.get(name)
            limit = task.time_limit if task is not None else None
            found = limit or self.task_estimate_s
            if task is not None:
                self._estimates[name] = found
                if not limit:
                    self._learning.add(name)
        return found

    def _run_lanes(self, items: list[_Item], context: LambdaContext | None) -> None:
        """Threads: a FIFO group's records run in order in one lane; other records each in their own."""
        lanes: dict[object, list[_Item]] = {}
        for item in items:
            lanes.setdefault(item.group if item.group is not None else id(item), []).append(item)
        blocked: set[str] = set()

        def lane(part: list[_Item]) -> None:
            for item in part:
                self._run(item, context, blocked)

        pool = self._threads()
        for future in [pool.submit(lane, part) for part in lanes.values()]:
            future.result()

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cloudq-lambda")
        return self._pool

    # -- settling ---------------------------------------------------------------------------------

    def _settle(self, broker: SQSBroker, items: list[_Item]) -> list[str]:
        """Apply the outcomes (the core's ``settle`` partition); returns the message ids to report
        as failed: unread, not started and retried records in batch order, then those whose
        re-send or dead-lettering failed."""
        if self._unresolved and any(_calls_sqs(i) for i in items):
            self._resolve(broker, items)
        plan = settle((i.delivery, i.outcome) for i in items if i.delivery is not None and i.outcome is not None)
        delays = {id(d): delay for delay, group in plan.nacks.items() for d in group}
        ids = {id(i.delivery): i.message_id for i in items}
        failed: list[str] = []
        # follow-ups (chain steps, links) first: a record whose follow-ups could not be sent is
        # reported failed and comes back, its follow-ups then sent again with the same task ids
        failed += [ids[id(d)] for d in send_followups(plan, self.app, broker.send)]
        visibility: list[tuple[Delivery, float]] = []
        for item in items:
            delivery = item.delivery
            if delivery is None:
                failed.append(item.message_id)
            elif item.outcome is None or id(delivery) in delays:
                failed.append(item.message_id)
                visibility.append((delivery, delays.get(id(delivery), item.later)))
                if item.outcome is None:
                    log.info("message %s not started: %s", delivery.message_id, item.why)
        paid = [d for d in plan.acks if d.receipt.claim is not None]  # done, with an S3 payload to delete
        for queue, pairs in plan.sends.items():
            originals = [d for d, _ in pairs]
            if _applied("send", [ids[id(d)] for d in originals], failed, broker.send, queue, [m for _, m in pairs]):
                paid += [d for d in originals if d.receipt.claim is not None]
        for reason, group in plan.dead.items():
            _applied("dead_letter", [ids[id(d)] for d in group], failed, broker.dead_letter, group, reason)
        if visibility:
            _applied("change_visibility", len(visibility), failed, broker.change_visibility, visibility)
        if paid:  # delete them now, so their payloads can go (the Lambda service's own delete is a no-op)
            _applied("ack", len(paid), failed, broker.ack, paid)
        return failed


class _Lost(Exception):
    """A record's body is gone for good: it is dead-lettered with this reason."""


def _applied(what: str, records: list[str] | int, failed: list[str], call: Callable[..., object], *args: Any) -> bool:
    """Make one broker call for some records. When it fails, ``records`` (message ids) are reported
    failed: they come back after the queue's visibility timeout (a duplicate, never a loss); a
    count instead means they are left to SQS as they are."""
    try:
        call(*args)
    except Exception as exc:
        count = records if isinstance(records, int) else len(records)
        log.warning("%s failed for %d record(s), leaving them to SQS: %s: %s", what, count, _name(exc), exc)
        if not isinstance(records, int):
            failed.extend(records)
        return False
    return True


def _calls_sqs(item: _Item) -> bool:
    """Whether settling ``item`` acts on its queue: all but a plain done record (the Lambda
    service deletes those; an Ack's follow-ups go to their own queues, resolved by the broker)."""
    d = item.delivery
    if d is None:
        return False
    return not isinstance(item.outcome, Ack) or d.receipt.claim is not None


def _group_of(record: dict[str, Any]) -> str | None:
    attributes = record.get("attributes")
    group = attributes.get("MessageGroupId") if isinstance(attributes, dict) else None
    return group if isinstance(group, str) else None


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def make_handler(
    app: App,
    *,
    concurrency: int = 1,
    safety_margin_s: float = DEFAULT_SAFETY_MARGIN_S,
    task_estimate_s: float = DEFAULT_TASK_ESTIMATE_S,
) -> LambdaHandler:
    """The Lambda handler for ``app``: ``handler = make_handler(app)`` at module level.

    ``concurrency`` > 1 runs records in threads (for I/O-bound tasks; FIFO groups stay in order).
    ``safety_margin_s`` is kept free at the end of an invocation; ``task_estimate_s`` is how long a
    task without ``time_limit`` is assumed to take until it is seen to take longer."""
    return LambdaHandler(app, concurrency=concurrency, safety_margin_s=safety_margin_s, task_estimate_s=task_estimate_s)


lambda_handler = make_handler
