"""``sqs://``: the cloudq Broker on Amazon SQS.

Every call is batched where SQS allows it: SendMessageBatch for more than one message (by 10
entries and by total size, cut where SQS bills the fewest 64 KiB chunks), ReceiveMessage of up to 10 with long polling, DeleteMessageBatch
for acks and ChangeMessageVisibilityBatch for retries, lease heartbeats and releases. Bodies
above the queue's MaximumMessageSize go to S3 when a bucket is configured (claim check).
Missing queues and their dead-letter queues are created on first use unless create_missing is
off, with the attributes ``cloudq deploy`` gives them (see resources.py).

Options (URL query, ``broker_options`` or ``CLOUDQ_BROKER_OPTIONS``): prefix, wait, bucket,
visibility, create_missing, max_receive_count, fifo, region, endpoint_url, max_connections.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudq.backends.urls import Parser, as_bool, as_text, integer_in, number_in, read_options
from cloudq.claimcheck import ClaimCheckMissing, ForeignClaimCheck, Pointer, parse_pointer
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge, QueueNotFound
from cloudq.interfaces import BrokerLimits, DeadLetter, Delivery, OutgoingMessage, QueueStats
from cloudq.util.chunks import chunks

from . import resources as res
from . import sqs_messages as msg
from .errors import DEPLOY_HINT, FifoDelayUnsupported, error_code, translated
from .s3 import claim_checks, pointer_text
from .session import COMMON_PARSERS, AWSBackend, AWSConfig

if TYPE_CHECKING:
    from cloudq.config import Settings

log = logging.getLogger("cloudq.sqs")

S3_MAX_OBJECT_BYTES = 5 * 1024**3  # one PutObject
VISIBILITY_MARGIN_S = 5  # keep lease changes this far inside SQS's 12-hour window
CLAIM_RETRY_S = 5  # a message whose S3 payload cannot be read now is visible again after this
DEAD_LETTER_SCAN_LEASE_S = 30  # hide dead letters this long while listing them, then show them again
# hide dead letters this long while a redrive or delete goes through them: longer than the scan
# takes, so none comes round twice (a crashed scan leaves them hidden this long, never lost)
DEAD_LETTER_ACTION_LEASE_S = 300
LONG_LISTING = 1000  # dead letters listed beyond this are hidden as long as for an action
LARGE_BODY_MARGIN = 4096  # send_async prepares bodies this close to the limit in a thread (they may go to S3)
# batch entry failures meaning "this lease is over" (the message was deleted or leased again): skipped, not raised
_GONE = {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}

BROKER_PARSERS: dict[str, Parser] = {
    **COMMON_PARSERS,
    "prefix": lambda n, v: as_text(n, v) or "",
    "wait": number_in(0, res.SQS_MAX_WAIT_S),
    "visibility": number_in(1, res.SQS_MAX_VISIBILITY_S),
    "max_receive_count": integer_in(1, 1000),
    "fifo": as_bool,
}


@dataclass(frozen=True, slots=True)
class SQSQueue:
    name: str  # cloudq's name
    sqs_name: str
    url: str
    fifo: bool
    max_bytes: int
    dead_letter_name: str


@dataclass(frozen=True, slots=True)
class SQSReceipt:
    """What the broker needs to act on a delivery later (opaque to everyone else)."""

    queue: SQSQueue
    handle: str
    received_at: float  # monotonic
    raw_body: str
    raw_attributes: dict[str, Any]
    group_id: str | None
    claim: Pointer | None


class SQSBroker(AWSBackend):
    """Broker on SQS standard and FIFO queues (a cloudq queue named ``*.fifo`` is FIFO)."""

    messaging_system = "aws_sqs"  # OpenTelemetry's messaging.system (cloudq.interfaces.MessagingSystem)

    def __init__(
        self,
        *,
        prefix: str = "",
        wait_s: float = res.SQS_MAX_WAIT_S,
        visibility_s: float = 60.0,
        bucket: str | None = None,
        create_missing: bool = True,
        max_receive_count: int = res.DEFAULT_MAX_RECEIVE_COUNT,
        fifo: bool = False,
        config: AWSConfig | None = None,
    ) -> None:
        self.prefix = prefix
        self.wait_s = wait_s
        self.visibility_s = visibility_s
        self.create_missing = create_missing
        self.max_receive_count = max_receive_count
        self.fifo = fifo
        super().__init__(config)
        self.claims = claim_checks(self.clients, bucket, f"{prefix}cloudq/", create_missing) if bucket else None
        self.limits = BrokerLimits(
            max_body_bytes=res.SQS_MAX_MESSAGE_BYTES,
            max_delay_s=res.SQS_MAX_DELAY_S,
            max_batch=res.SQS_MAX_BATCH_ENTRIES,
            max_lease_s=res.SQS_MAX_VISIBILITY_S,
            max_wait_s=wait_s,
            per_message_delay=not fifo,
            native_dead_letter=True,
            counts_deliveries=True,
            ordering=fifo,
        )
        self._queues: dict[str, SQSQueue] = {}
        self._dead_letters: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SQSBroker:
        parts = urlsplit(url)
        named = parts.netloc + parts.path.rstrip("/")
        if named:
            raise ConfigurationError(
                f"broker URL {url!r}: sqs:// takes no queue name ({named!r}); each task's queue (or the "
                "default_queue setting) names the SQS queue, and ?prefix= prefixes every name, e.g. sqs://?prefix=shop-"
            )
        options = read_options(
            url,
            settings.broker_options,
            BROKER_PARSERS,
            {
                "prefix": "",
                "wait": float(res.SQS_MAX_WAIT_S),
                "visibility": settings.visibility_timeout,
                "create_missing": settings.create_missing,
                "max_receive_count": res.DEFAULT_MAX_RECEIVE_COUNT,
                "fifo": settings.default_queue.endswith(res.FIFO_SUFFIX),
            },
            base_name="broker_options",
        )
        return cls(
            prefix=options["prefix"],
            wait_s=options["wait"],
            visibility_s=options["visibility"],
            bucket=options.get("bucket"),
            create_missing=options["create_missing"],
            max_receive_count=options["max_receive_count"],
            fifo=options["fifo"],
            config=AWSConfig.from_options(options, settings.concurrency),
        )

    def __repr__(self) -> str:
        return f"<SQSBroker prefix={self.prefix!r} region={self.clients.region}>"

    # -- queues ---------------------------------------------------------------------------------

    def _sqs(self) -> Any:
        return self.clients.get("sqs")

    def _sends(self) -> Any:
        """The client for sends: short timeouts and the ``send_timeout`` deadline, so ``.delay()``
        fails fast in a partition instead of waiting out the long-poll read timeout."""
        return self.clients.get("sqs", producer=True)

    def _call(self, action: str, resource: str) -> Any:
        return translated(f"sqs:{action}", resource, self.clients.endpoint("sqs"))

    def queue(self, name: str) -> SQSQueue:
        """The SQS queue behind a cloudq queue name, resolved once (created if allowed)."""
        found = self._queues.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._queues.get(name)
            if found is None:
                found = self._queues[name] = self._resolve(name)
                if found.max_bytes < self.limits.max_body_bytes:
                    self.limits = dataclasses.replace(self.limits, max_body_bytes=found.max_bytes)
        return found

    def sqs_name(self, name: str) -> str:
        full = self.prefix + name
        if self.fifo and not res.is_fifo(full):
            full += res.FIFO_SUFFIX
        problem = res.queue_name_problem(full)
        if problem:
            raise ConfigurationError(f"queue {name!r} maps to SQS queue {full!r}, which is not allowed: {problem}")
        return full

    def _resolve(self, name: str) -> SQSQueue:
        full = self.sqs_name(name)
        url = self._queue_url(full)
        if url is None:
            if not self.create_missing:
                raise QueueNotFound(f"SQS queue {full!r} does not exist in {self.clients.region}: {DEPLOY_HINT}")
            url = self._create(full)
        with self._call("GetQueueAttributes", full):
            attrs = self._sqs().get_queue_attributes(
                QueueUrl=url, AttributeNames=["MaximumMessageSize", "RedrivePolicy", "FifoQueue"]
            )["Attributes"]
        dead_letter = res.dead_letter_queue_name(full)
        if attrs.get("RedrivePolicy"):
            dead_letter = str(json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"]).rsplit(":", 1)[-1]
        max_bytes = int(attrs.get("MaximumMessageSize", res.SQS_MAX_MESSAGE_BYTES))
        return SQSQueue(name, full, url, attrs.get("FifoQueue") == "true", max_bytes, dead_letter)

    def _queue_url(self, sqs_name: str) -> str | None:
        with self._call("GetQueueUrl", sqs_name):
            try:
                return str(self._sqs().get_queue_url(QueueName=sqs_name)["QueueUrl"])
            except Exception as exc:
                if error_code(exc) in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
                    return None
                raise

    def _create(self, sqs_name: str) -> str:
        dead_name = res.dead_letter_queue_name(sqs_name)
        sqs = self._sqs()
        with self._call("CreateQueue", dead_name):
            dead_url = sqs.create_queue(QueueName=dead_name, Attributes=res.dead_letter_queue_attributes(dead_name))[
                "QueueUrl"
            ]
            dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
        attributes = res.queue_attributes(sqs_name, self.visibility_s, self.wait_s, dead_arn, self.max_receive_count)
        with self._call("CreateQueue", sqs_name):
            url = str(sqs.create_queue(QueueName=sqs_name, Attributes=attributes)["QueueUrl"])
        log.info("created SQS queue %s with dead-letter queue %s", sqs_name, dead_name)
        return url

    def _dead_letter_url(self, queue: SQSQueue) -> str:
        return self._dead_letter_target(queue)[0]

    def _dead_letter_target(self, queue: SQSQueue) -> tuple[str, int]:
        """URL and MaximumMessageSize of the queue's dead-letter queue, looked up once."""
        found = self._dead_letters.get(queue.dead_letter_name)
        if found is None:
            url = self._find_or_create_dead_letter(queue)
            with self._call("GetQueueAttributes", queue.dead_letter_name):
                attrs = self._sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
            size = int(attrs["Attributes"].get("MaximumMessageSize", res.SQS_MAX_MESSAGE_BYTES))
            found = self._dead_letters[queue.dead_letter_name] = (url, size)
        return found

    def _find_or_create_dead_letter(self, queue: SQSQueue) -> str:
        url = self._queue_url(queue.dead_letter_name)
        if url is not None:
            return url
        if not self.create_missing:
            raise QueueNotFound(
                f"dead-letter queue {queue.dead_letter_name!r} of {queue.sqs_name!r} does not exist: {DEPLOY_HINT}"
            )
        with self._call("CreateQueue", queue.dead_letter_name):
            attributes = res.dead_letter_queue_attributes(queue.dead_letter_name)
            return str(self._sqs().create_queue(QueueName=queue.dead_letter_name, Attributes=attributes)["QueueUrl"])

    def dead_letter_queue(self, name: str) -> str:
        """URL of the dead-letter queue of cloudq queue ``name``."""
        return self._dead_letter_url(self.queue(name))

    # -- sending --------------------------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Send in as few requests as SQS allows; raises before sending anything when a message
        cannot be sent (too large without a bucket, delay on a FIFO queue, too many attributes)."""
        if not messages:
            return []
        q = self.queue(queue)
        entries = self.prepare(q, messages)
        if len(entries) == 1:
            return [self._send_one(q, entries[0])]
        return self._send_batches(q, entries)

    def prepare(self, queue: SQSQueue, messages: Sequence[OutgoingMessage]) -> list[msg.Entry]:
        """Check every message, then build the request entries (uploading oversize bodies to S3)."""
        if queue.fifo and any(m.delay_s > 0 for m in messages):
            raise FifoDelayUnsupported(
                f"SQS FIFO queue {queue.sqs_name!r} cannot delay single messages (countdown/eta); "
                "send delayed work to a standard queue"
            )
        entries = [msg.build_entry(m, queue.fifo) for m in messages]
        oversize = [i for i, e in enumerate(entries) if e.size > queue.max_bytes]
        if oversize and self.claims is None:
            worst = entries[oversize[0]]
            raise MessageTooLarge(
                worst.size,
                queue.max_bytes,
                "configure an S3 bucket for large messages (sqs://?bucket=NAME or broker_options={'bucket': ...})",
            )
        for i in oversize:
            entries[i] = self._offload(queue, messages[i], entries[i])
        return entries

    def _offload(self, queue: SQSQueue, message: OutgoingMessage, entry: msg.Entry) -> msg.Entry:
        assert self.claims is not None
        if len(message.body) > S3_MAX_OBJECT_BYTES:
            raise MessageTooLarge(len(message.body), S3_MAX_OBJECT_BYTES, "S3 takes at most 5 GiB in one upload")
        ref = self.claims.put(message.body, queue.sqs_name)
        attributes = {k: v for k, v in entry.attributes.items() if k != msg.ENCODING}
        attributes[msg.CLAIM_CHECK] = msg.attribute("s3")
        pointer = dataclasses.replace(entry, body=pointer_text(ref, len(message.body)), attributes=attributes)
        if pointer.size > queue.max_bytes:
            raise MessageTooLarge(pointer.size, queue.max_bytes, "even the claim-check pointer is too large")
        return pointer

    def _send_one(self, queue: SQSQueue, entry: msg.Entry) -> str:
        with self._call("SendMessage", queue.sqs_name):
            return str(self._sends().send_message(QueueUrl=queue.url, **entry.request())["MessageId"])

    def _send_batches(self, queue: SQSQueue, entries: Sequence[msg.Entry]) -> list[str]:
        ids: list[str] = []
        for chunk in msg.entry_batches(entries, queue.max_bytes):
            results = self._batch_call(
                "SendMessageBatch", queue.sqs_name, queue.url, msg.batch_request(chunk), retry=True
            )
            ids.extend(str(results[str(i)]["MessageId"]) for i in range(len(chunk)))
        return ids

    def _batch_call(
        self,
        action: str,
        resource: str,
        url: str,
        entries: list[dict[str, Any]],
        *,
        retry: bool = False,
        tolerate: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, dict[str, Any]]:
        """One *Batch call through ``msg.BatchCall``; returns the successful entries by Id."""
        method = getattr(self._sends() if action == "SendMessageBatch" else self._sqs(), _snake(action))
        batch = msg.BatchCall(action, resource, entries, retry=retry, tolerate=tolerate)
        while batch.pending:
            with self._call(action, resource):
                batch.record(method(QueueUrl=url, Entries=batch.pending))
        return batch.done

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        """One ReceiveMessage of up to 10 (``limits.max_batch``), long-polling up to ``wait_s``
        (capped by the ``wait`` option and SQS's 20 s)."""
        q = self.queue(queue)
        count = max(1, min(int(max_messages), res.SQS_MAX_BATCH_ENTRIES))
        visibility = int(min(max(math.ceil(lease_s), 0), res.SQS_MAX_VISIBILITY_S))
        wait = int(min(math.ceil(max(wait_s, 0.0)), self.wait_s, res.SQS_MAX_WAIT_S))
        return self._deliveries(q, self._receive_raw(q, count, visibility, wait))

    def _receive_raw(
        self, queue: SQSQueue, count: int, visibility: int, wait: int, url: str | None = None
    ) -> list[dict[str, Any]]:
        with self._call("ReceiveMessage", queue.sqs_name):
            response = self._sqs().receive_message(
                QueueUrl=url or queue.url,
                MaxNumberOfMessages=count,
                VisibilityTimeout=visibility,
                WaitTimeSeconds=wait,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId", "SentTimestamp"],
            )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _deliveries(self, queue: SQSQueue, raw: list[dict[str, Any]]) -> list[Delivery]:
        """One Delivery per message; a message whose S3 payload cannot be read right now (S3
        unreachable, access denied) is given back on its own, never failing the batch."""
        now = time.monotonic()
        out: list[Delivery] = []
        waiting: list[Delivery] = []
        for m in raw:
            try:
                out.append(self.delivery(queue, m, now))
            except Exception as exc:
                log.error(
                    "message %s on %s: its S3 payload cannot be read now, giving it back in %ss: %s",
                    m.get("MessageId"),
                    queue.sqs_name,
                    CLAIM_RETRY_S,
                    exc,
                )
                waiting.append(self.delivery(queue, m, now, fetch=False))
        if waiting:
            try:
                self.nack(waiting, CLAIM_RETRY_S)
            except Exception as exc:  # their leases expire instead
                log.error("could not give back %d messages on %s: %s", len(waiting), queue.sqs_name, exc)
        return out

    def delivery(self, queue: SQSQueue, m: dict[str, Any], received_at: float, fetch: bool = True) -> Delivery:
        """The Delivery of one message in ReceiveMessage's shape (also used by the Lambda handler).

        What a message carries never makes this raise: forged or corrupt cloudq attributes, a
        claim-check pointer that is unreadable, outside this broker's bucket or whose object is
        gone give a Delivery with ``malformed`` set (raw body, no claim), which is dead-lettered
        unrun. Only an S3 failure while fetching raises. ``fetch=False`` leaves a claim-check
        pointer as the body, for deliveries that are only given back or dead-lettered, never run."""
        raw_attributes = msg.forwardable(m.get("MessageAttributes", {}))
        user, internal = msg.split_attributes(raw_attributes)
        system = m.get("Attributes", {})
        group = system.get("MessageGroupId")
        text = m["Body"]
        try:
            if m.get(msg.UNREADABLE):
                raise msg.Malformed(m[msg.UNREADABLE])
            count = msg.delivery_count(system, internal)
            message_id = msg.message_id(internal, m["MessageId"])
            claim = self._claim(text, internal)
            if claim is None:
                body = msg.decode_body(text, internal.get(msg.ENCODING))
            else:
                body = self._fetch(claim) if fetch else text.encode()
        except msg.Malformed as exc:
            receipt = SQSReceipt(queue, m["ReceiptHandle"], received_at, text, raw_attributes, group, None)
            count, ordering = msg.receive_count(system), group if queue.fifo else None
            return Delivery(text.encode(), receipt, count, queue.name, m["MessageId"], user, ordering, str(exc))
        receipt = SQSReceipt(queue, m["ReceiptHandle"], received_at, text, raw_attributes, group, claim)
        return Delivery(body, receipt, count, queue.name, message_id, user, group if queue.fifo else None)

    def _claim(self, text: str, internal: dict[str, str]) -> Pointer | None:
        """The S3 object a claim-check message points to; only this broker's own objects are
        read (and deleted on ack), so a forged pointer cannot reach anything else."""
        flag = internal.get(msg.CLAIM_CHECK)
        if flag is None:
            return None
        if flag != "s3":
            raise msg.Malformed(f"attribute {msg.CLAIM_CHECK!r} is {flag[:60]!r}, not 's3'")
        try:
            ref = self.claims.parse(text) if self.claims is not None else parse_pointer(text, "s3")
        except ForeignClaimCheck:
            raise msg.Malformed(f"message marked as a claim check has no valid pointer: {text[:200]!r}") from None
        if self.claims is None:
            raise msg.Malformed(f"claim-check pointer to {ref}, but this broker has no S3 bucket (sqs://?bucket=NAME)")
        if not self.claims.owns(ref):
            raise msg.Malformed(f"claim-check pointer to {ref}, outside this broker's {self.claims.where()}")
        return ref

    def _fetch(self, ref: Pointer) -> bytes:
        try:
            return self.claims_get(ref)
        except ClaimCheckMissing as exc:
            raise msg.Malformed(
                f"ClaimCheckMissing: {exc} (already processed, or removed by a lifecycle rule)"
            ) from None

    def claims_get(self, ref: Pointer) -> bytes:
        """The payload of a claim checked by this broker (raises ClaimCheckMissing when it is gone)."""
        if self.claims is None:
            raise ClaimCheckMissing(f"payload object {ref} cannot be read: this broker has no S3 bucket")
        return self.claims.get(ref)

    # -- settling -------------------------------------------------------------------------------

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """DeleteMessageBatch, then delete the S3 payloads of the messages deleted."""
        deleted: list[SQSReceipt] = []
        for queue, group in _by_queue(deliveries):
            deleted.extend(self._delete(queue, [d.receipt for d in group]))
        refs = [r.claim for r in deleted if r.claim is not None]
        if refs and self.claims is not None:
            self.claims.delete(refs)

    def _delete(self, queue: SQSQueue, receipts: Sequence[SQSReceipt]) -> list[SQSReceipt]:
        """Delete leased messages; returns the receipts SQS accepted (a stale one is skipped)."""
        deleted: list[SQSReceipt] = []
        for chunk in chunks(receipts, res.SQS_MAX_BATCH_ENTRIES):
            entries = [{"Id": str(i), "ReceiptHandle": r.handle} for i, r in enumerate(chunk)]
            done = self._batch_call("DeleteMessageBatch", queue.sqs_name, queue.url, entries, tolerate=_GONE)
            deleted.extend(r for i, r in enumerate(chunk) if str(i) in done)
        return deleted

    def _change_visibility(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        self.change_visibility([(d, seconds) for d in deliveries])

    def change_visibility(self, changes: Sequence[tuple[Delivery, float]]) -> None:
        """Give each delivery its own visibility in seconds, in one ChangeMessageVisibilityBatch per
        10 of a queue (the Lambda handler's retries, each with its own backoff)."""
        now = time.monotonic()
        seconds = {id(d): s for d, s in changes}
        for queue, group in _by_queue([d for d, _ in changes]):
            for chunk in chunks(group, res.SQS_MAX_BATCH_ENTRIES):
                entries = [
                    {
                        "Id": str(i),
                        "ReceiptHandle": d.receipt.handle,
                        "VisibilityTimeout": _visibility(seconds[id(d)], d.receipt, now),
                    }
                    for i, d in enumerate(chunk)
                ]
                self._batch_call("ChangeMessageVisibilityBatch", queue.sqs_name, queue.url, entries, tolerate=_GONE)

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Visible again after ``delay_s`` (capped to what is left of the 12-hour window)."""
        self._change_visibility(deliveries, delay_s)

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        self._change_visibility(deliveries, lease_s)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back unstarted messages. On standard queues the message is sent again carrying
        its receive count, then the leased copy is deleted, so the unstarted receive does not
        spend an attempt; on FIFO queues (where resending would reorder the group) the lease is
        ended with visibility 0 and the receive still counts."""
        for queue, group in _by_queue(deliveries):
            if queue.fifo:
                self._change_visibility(group, 0)
                continue
            entries = []
            for d in group:
                attributes = dict(d.receipt.raw_attributes)
                attributes[msg.PRIOR_DELIVERIES] = msg.attribute(str(max(0, d.delivery_count - 1)))
                attributes[msg.MESSAGE_ID] = msg.attribute(d.message_id)
                entries.append(msg.Entry(d.receipt.raw_body, attributes))
            self._send_batches(queue, entries)
            self._delete(queue, [d.receipt for d in group])

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Send each body to the queue's dead-letter queue with ``reason`` as a message attribute,
        then delete the originals that were moved (an original whose copy failed stays put).
        Requests are split by count and bytes, and each entry is fitted to the dead-letter queue's
        MaximumMessageSize (the reason shortened first), so a large body never fails the batch."""
        for queue, group in _by_queue(deliveries):
            dead_url, dead_max = self._dead_letter_target(queue)
            dead_fifo = res.is_fifo(queue.dead_letter_name)
            pairs: list[tuple[msg.Entry, SQSReceipt]] = []
            for d in group:
                r = d.receipt
                attributes = {k: v for k, v in r.raw_attributes.items() if k != msg.DEAD_LETTER_REASON}
                attributes[msg.SOURCE_QUEUE] = msg.attribute(queue.name)
                attributes[msg.MESSAGE_ID] = msg.attribute(d.message_id)
                entry = _fit_size(msg.Entry(r.raw_body, _fit_attributes(attributes)), reason, dead_max)
                if dead_fifo:
                    entry.dedup_id = msg.safe_token(d.message_id or r.handle)
                    entry.group_id = r.group_id or entry.dedup_id
                pairs.append((entry, r))
            moved: list[SQSReceipt] = []
            try:
                for chunk in msg.send_batches(pairs, dead_max, _pair_size):
                    request = msg.batch_request(e for e, _ in chunk)
                    done = self._batch_call("SendMessageBatch", queue.dead_letter_name, dead_url, request, retry=True)
                    moved.extend(r for i, (_, r) in enumerate(chunk) if str(i) in done)
            finally:  # what was copied is deleted even when a later request fails
                self._delete(queue, moved)

    # -- inspection -----------------------------------------------------------------------------

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Read dead letters without consuming them: each is hidden briefly while the list is
        built, then made visible again."""
        q = self.queue(queue)
        found: dict[str, DeadLetter] = {}

        def keep(batch: list[dict[str, Any]]) -> list[str]:
            for m in batch:
                letter = self._dead_letter_entry(q, m)
                found.setdefault(letter.message_id, letter)
            return [m["ReceiptHandle"] for m in batch]

        # a long listing (the command's selection for a redrive) hides them as long as an action does
        lease = DEAD_LETTER_SCAN_LEASE_S if limit <= LONG_LISTING else DEAD_LETTER_ACTION_LEASE_S
        self._scan_dead(q, keep, lease, limit)
        return list(found.values())[:limit]

    def _scan_dead(
        self,
        q: SQSQueue,
        act: Callable[[list[dict[str, Any]]], list[str]],
        lease_s: int,
        limit: int | None = None,
    ) -> None:
        """Receive the dead-letter queue's messages (each once, hidden for ``lease_s``) and hand
        each batch to ``act``, which returns the receipt handles of those it left there: they are
        made visible again at the end. Ends when a receive brings no message not seen yet."""
        url = self._dead_letter_url(q)
        seen: set[str] = set()
        shown: list[str] = []
        try:
            while limit is None or len(seen) < limit:
                count = (
                    res.SQS_MAX_BATCH_ENTRIES if limit is None else min(res.SQS_MAX_BATCH_ENTRIES, limit - len(seen))
                )
                raw = self._receive_raw(q, count, lease_s, 1, url)
                fresh = [m for m in raw if m["MessageId"] not in seen]
                shown.extend(m["ReceiptHandle"] for m in raw if m["MessageId"] in seen)
                if not fresh:
                    break
                seen.update(m["MessageId"] for m in fresh)
                shown.extend(act(fresh))
        finally:
            for chunk in chunks(shown, res.SQS_MAX_BATCH_ENTRIES):
                entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)]
                self._batch_call("ChangeMessageVisibilityBatch", q.dead_letter_name, url, entries, tolerate=_GONE)

    def redrive(
        self,
        queue: str,
        ids: Collection[str] | None = None,
        *,
        rewrite: Callable[[bytes], bytes] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Receive from the dead-letter queue, SendMessageBatch to the queue, then
        DeleteMessageBatch only the dead letters whose copy was accepted: a crash between the two
        leaves a message in both (on FIFO queues the copy's deduplication id, from the dead
        letter's SQS id, drops a second copy sent within 5 minutes). About 0.3 requests per
        message: one of each call per 10. StartMessageMoveTask is not used: it keeps the
        attributes that hold the dead-letter reason and the deliveries already spent."""
        q = self.queue(queue)
        dead_url = self._dead_letter_url(q)
        moved = 0

        def move(batch: list[dict[str, Any]]) -> list[str]:
            nonlocal moved
            chosen = [m for m in batch if ids is None or self._dead_letter_id(m) in ids]
            pairs = [(self._redriven(q, m, rewrite), m["ReceiptHandle"]) for m in chosen]
            sent: list[str] = []
            try:
                for chunk in msg.send_batches(pairs, q.max_bytes, _pair_size):
                    done = self._batch_call(
                        "SendMessageBatch", q.sqs_name, q.url, msg.batch_request(e for e, _ in chunk), retry=True
                    )
                    sent.extend(h for i, (_, h) in enumerate(chunk) if str(i) in done)
            finally:  # what was copied leaves the dead letters, even when a later request fails
                self._delete_handles(q.dead_letter_name, dead_url, sent)
                moved += len(sent)
                if progress is not None and sent:
                    progress(len(sent))
            return [m["ReceiptHandle"] for m in batch if m["ReceiptHandle"] not in sent]  # a failed copy too

        self._scan_dead(q, move, DEAD_LETTER_ACTION_LEASE_S)
        return moved

    def delete_dead_letters(self, queue: str, ids: Collection[str]) -> int:
        """DeleteMessageBatch the chosen dead letters, then their S3 payloads."""
        q = self.queue(queue)
        dead_url = self._dead_letter_url(q)
        deleted = 0

        def drop(batch: list[dict[str, Any]]) -> list[str]:
            nonlocal deleted
            chosen = [m for m in batch if self._dead_letter_id(m) in ids]
            self._delete_handles(q.dead_letter_name, dead_url, [m["ReceiptHandle"] for m in chosen])
            refs = [ref for m in chosen if (ref := self._dead_claim(m)) is not None]
            if refs and self.claims is not None:
                self.claims.delete(refs)
            deleted += len(chosen)
            return [m["ReceiptHandle"] for m in batch if m not in chosen]

        self._scan_dead(q, drop, DEAD_LETTER_ACTION_LEASE_S)
        return deleted

    def _delete_handles(self, name: str, url: str, handles: Sequence[str]) -> None:
        for chunk in chunks(handles, res.SQS_MAX_BATCH_ENTRIES):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
            self._batch_call("DeleteMessageBatch", name, url, entries, tolerate=_GONE)

    @staticmethod
    def _dead_letter_id(m: dict[str, Any]) -> str:
        _, internal = msg.split_attributes(msg.forwardable(m.get("MessageAttributes", {})))
        try:
            return msg.message_id(internal, m["MessageId"])
        except msg.Malformed:
            return str(m["MessageId"])

    def _dead_claim(self, m: dict[str, Any]) -> Pointer | None:
        _, internal = msg.split_attributes(msg.forwardable(m.get("MessageAttributes", {})))
        try:
            return self._claim(m["Body"], internal)
        except msg.Malformed:
            return None

    def _redriven(self, q: SQSQueue, m: dict[str, Any], rewrite: Callable[[bytes], bytes] | None) -> msg.Entry:
        """The copy of dead letter ``m`` for its queue: without the dead-letter reason, the source
        and the deliveries spent (so its count starts over), with its first message id. ``rewrite``
        applies to bodies carried in the message (a claim-check pointer moves as it is)."""
        raw = msg.forwardable(m.get("MessageAttributes", {}))
        dropped = {msg.DEAD_LETTER_REASON, msg.SOURCE_QUEUE, msg.PRIOR_DELIVERIES}
        attributes = {k: v for k, v in raw.items() if k not in dropped}
        if msg.MESSAGE_ID in attributes or len(attributes) < res.SQS_MAX_MESSAGE_ATTRIBUTES:
            attributes[msg.MESSAGE_ID] = msg.attribute(self._dead_letter_id(m))  # else SQS's id for the copy
        text = m["Body"]
        if rewrite is not None and msg.CLAIM_CHECK not in attributes:
            _, internal = msg.split_attributes(raw)
            try:
                body = msg.decode_body(text, internal.get(msg.ENCODING))
            except msg.Malformed:
                body = None  # moved as it came: the worker dead-letters it again with the reason
            if body is not None:
                text, encoding = msg.encode_body(rewrite(body))
                attributes.pop(msg.ENCODING, None)
                if encoding:
                    attributes[msg.ENCODING] = msg.attribute(encoding)
        entry = msg.Entry(text, attributes)
        if q.fifo:
            entry.dedup_id = hashlib.sha256(f"redrive:{m['MessageId']}".encode()).hexdigest()
            group = m.get("Attributes", {}).get("MessageGroupId")
            entry.group_id = msg.safe_token(group) if group else entry.dedup_id
        return entry

    def _dead_letter_entry(self, queue: SQSQueue, m: dict[str, Any]) -> DeadLetter:
        _, internal = msg.split_attributes(msg.forwardable(m.get("MessageAttributes", {})))
        reason = internal.get(msg.DEAD_LETTER_REASON) or (
            f"MaxReceiveCount: received more than the redrive policy allows (ApproximateReceiveCount "
            f"{m.get('Attributes', {}).get('ApproximateReceiveCount', '?')}) without an ack"
        )
        message_id = self._dead_letter_id(m)
        try:
            claim = self._claim(m["Body"], internal)
            body = msg.decode_body(m["Body"], internal.get(msg.ENCODING)) if claim is None else self._fetch(claim)
        except msg.Malformed:  # dead-lettered because of it: show it as it came
            body = m["Body"].encode()
        sent = m.get("Attributes", {}).get("SentTimestamp")
        dead_at = int(sent) / 1000 if isinstance(sent, str) and sent.isdigit() else None
        return DeadLetter(body, reason, queue.name, message_id, dead_at)

    def stats(self, queue: str) -> QueueStats:
        q = self.queue(queue)
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        with self._call("GetQueueAttributes", q.sqs_name):
            attrs = self._sqs().get_queue_attributes(QueueUrl=q.url, AttributeNames=names)["Attributes"]
            dead = self._sqs().get_queue_attributes(QueueUrl=self._dead_letter_url(q), AttributeNames=names[:2])[
                "Attributes"
            ]
        return QueueStats(
            queue,
            ready=int(attrs.get(names[0], 0)),
            in_flight=int(attrs.get(names[1], 0)),
            delayed=int(attrs.get(names[2], 0)),
            dead_lettered=int(dead.get(names[0], 0)) + int(dead.get(names[1], 0)),
        )

    def purge(self, queue: str) -> int:
        """PurgeQueue (SQS allows one per queue per 60 s): drops ready, delayed and leased messages;
        returns SQS's approximate count of them."""
        before = self.stats(queue)
        q = self.queue(queue)
        with self._call("PurgeQueue", q.sqs_name):
            self._sqs().purge_queue(QueueUrl=q.url)
        return before.ready + before.in_flight + before.delayed

    # -- async ------------------------------------------------------------------------------------

    async def send_async(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """``send`` on aiobotocore, for producers in an event loop: what is decided once or rarely
        (queue resolution, S3 uploads) runs in a thread, the SendMessage(Batch) calls on the loop."""
        import asyncio

        if not messages:
            return []
        found = self._queues.get(queue)
        q = found if found is not None else await asyncio.to_thread(self.queue, queue)  # resolved once
        if any(len(m.body) > q.max_bytes - LARGE_BODY_MARGIN for m in messages):
            entries = await asyncio.to_thread(self.prepare, q, messages)
        else:
            entries = self.prepare(q, messages)
        sqs = await self.async_clients.get("sqs")
        if len(entries) == 1:
            with self._call("SendMessage", q.sqs_name):
                response = await sqs.send_message(QueueUrl=q.url, **entries[0].request())
            return [str(response["MessageId"])]
        ids: list[str] = []
        for chunk in msg.entry_batches(entries, q.max_bytes):
            batch = msg.BatchCall("SendMessageBatch", q.sqs_name, msg.batch_request(chunk), retry=True)
            while batch.pending:
                with self._call("SendMessageBatch", q.sqs_name):
                    batch.record(await sqs.send_message_batch(QueueUrl=q.url, Entries=batch.pending))
            ids.extend(str(batch.done[str(i)]["MessageId"]) for i in range(len(chunk)))
        return ids


# -- helpers --------------------------------------------------------------------------------------


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")


def _by_queue(deliveries: Sequence[Delivery]) -> list[tuple[SQSQueue, list[Delivery]]]:
    groups: dict[str, tuple[SQSQueue, list[Delivery]]] = {}
    for d in deliveries:
        receipt = d.receipt
        if not isinstance(receipt, SQSReceipt):
            raise BrokerError(f"delivery {d.message_id or '?'} was not received from SQS (receipt {receipt!r})")
        groups.setdefault(receipt.queue.url, (receipt.queue, []))[1].append(d)
    return list(groups.values())


def _visibility(seconds: float, receipt: SQSReceipt, now: float) -> int:
    """Seconds of visibility to ask for: rounded up, and inside the 12 hours SQS allows from receipt."""
    left = res.SQS_MAX_VISIBILITY_S - (now - receipt.received_at) - VISIBILITY_MARGIN_S
    return int(max(0, min(math.ceil(max(seconds, 0.0)), left)))


def _pair_size(pair: tuple[msg.Entry, SQSReceipt]) -> int:
    return pair[0].size


def _fit_size(entry: msg.Entry, reason: str, max_bytes: int) -> msg.Entry:
    """``entry`` with the dead-letter reason attached, shortened (then user attributes dropped)
    so that it fits ``max_bytes``: a body that was sent near the limit can still be moved."""
    room = max_bytes - entry.size - len(msg.DEAD_LETTER_REASON) - len("String")
    if room < 64:  # not even a useful reason fits: drop the user's attributes first
        entry.attributes = {k: v for k, v in entry.attributes.items() if k in msg.INTERNAL_ATTRIBUTES}
        room = max_bytes - entry.size - len(msg.DEAD_LETTER_REASON) - len("String")
    text = reason[: msg.MAX_REASON_CHARS].encode()[: max(room, 1)].decode("utf-8", "ignore")
    entry.attributes[msg.DEAD_LETTER_REASON] = msg.attribute(text or "-")
    return entry


def _fit_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Keep cloudq's attributes when a dead letter would exceed SQS's 10: drop user ones first."""
    if len(attributes) <= res.SQS_MAX_MESSAGE_ATTRIBUTES:
        return attributes
    own = {k: v for k, v in attributes.items() if k in msg.INTERNAL_ATTRIBUTES}
    others = [(k, v) for k, v in attributes.items() if k not in msg.INTERNAL_ATTRIBUTES]
    keep = res.SQS_MAX_MESSAGE_ATTRIBUTES - len(own)
    return {**dict(others[: max(0, keep)]), **own}
