"""``dynamodb://TABLE``: the cloudq ResultStore on Amazon DynamoDB.

One item per task id. Every write is a single conditional request: ``set`` is a PutItem that
cannot overwrite a terminal (SUCCESS/FAILURE) record, ``claim`` an UpdateItem that only succeeds
while no one else holds an unexpired claim, so there is no read before a write. Reads are
strongly consistent. ``expires_at`` is the table's TTL attribute (whole epoch seconds); DynamoDB
deletes expired items lazily, so reads treat anything past its exact expiry as absent. Results
and extended-result arguments (``call``) that would push an item over DynamoDB's 400 KB go to S3,
the larger first, when a bucket is configured.

Options (URL query, ``results_options`` or ``CLOUDQ_RESULTS_OPTIONS``): bucket, create_missing,
region, endpoint_url, max_connections.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from cloudq import states
from cloudq.backends.common import (
    COUNTER_KIND,
    WORKER_KIND,
    WORKER_PREFIX,
    check_task_id,
    counter_id,
    counter_live,
)
from cloudq.backends.urls import read_options
from cloudq.claimcheck import ClaimCheckStore, Pointer, parse_pointer
from cloudq.errors import CloudqError, ConfigurationError, ResultStoreError, ResultTooLarge
from cloudq.interfaces import LINEAGE_IDS, Claim, Heartbeat, ResultRecord, TaskSummary
from cloudq.util.chunks import chunks

from . import resources as res
from .errors import TableNotFound, error_code, translated
from .s3 import claim_checks, pointer_text
from .session import COMMON_PARSERS, AWSBackend, AWSConfig

if TYPE_CHECKING:
    from cloudq.config import Settings

log = logging.getLogger("cloudq.dynamodb")
T = TypeVar("T")

ITEM_MARGIN_BYTES = 1024  # room for DynamoDB's own per-attribute overhead
EXACT_EXPIRY = "expires_exact"  # expires_at to the fraction of a second (the TTL attribute is whole seconds)
RESULT_REF = "result_ref"  # pointer to an offloaded result in S3
CALL = "call"  # result_extended: {"args": [...], "kwargs": {...}} as JSON text
CALL_REF = "call_ref"  # pointer to an offloaded call in S3
_OFFLOADABLE = (("result", RESULT_REF), (CALL, CALL_REF))
KIND = "kind"  # COUNTER_KIND on counter items; task records have none
COUNT = "count"
MAX_COUNTER_RESETS = 20  # rounds of replacing an expired counter before giving up (each lost one means progress)
BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
UNPROCESSED_ROUNDS = 8  # BatchGetItem rounds in a row that return nothing before giving up
UNPROCESSED_FIRST_PAUSE_S = 0.05  # doubling, jittered, up to UNPROCESSED_MAX_PAUSE_S
UNPROCESSED_MAX_PAUSE_S = 2.0
_ALL_STATES = states.ALL_STATES
WORKER_STATE = "cloudq.worker"  # the index partition of presence records: never a task state
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_NUMBER_FIELDS = ("started_at", "finished_at", "claim_until", "sent_at")
_TEXT_FIELDS = ("error_type", "error_message", "traceback", "claim_owner", "queue", "worker", *LINEAGE_IDS)
# every terminal state (SUCCESS, FAILURE, REVOKED): a terminal record is never overwritten or claimed
_TERMINAL = {f":terminal{i}": {"S": state} for i, state in enumerate(sorted(states.TERMINAL_STATES))}
_UNCLAIMED = "(attribute_not_exists(claim_until) OR claim_until <= :now OR claim_owner = :owner)"
_LIVE = f"(attribute_not_exists({EXACT_EXPIRY}) OR {EXACT_EXPIRY} > :now)"
_NOT_TERMINAL = f"NOT #state IN ({', '.join(_TERMINAL)})"


def _number(value: float) -> dict[str, str]:
    """DynamoDB number text that reads back as exactly the same float (or int)."""
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": format(Decimal(repr(float(value))), "f")}


def _read_number(attr: dict[str, str] | None) -> float | None:
    return None if attr is None else float(attr["N"])


def to_item(record: ResultRecord) -> dict[str, dict[str, str]]:
    item: dict[str, dict[str, str]] = {
        res.RESULTS_KEY: {"S": record.task_id},
        "state": {"S": record.state},
        "task_name": {"S": record.task_name},
        "attempts": {"N": str(int(record.attempts))},
        res.INDEX_SORT: _number(time.time()),  # the index's sort key (TaskIndex.recent)
    }
    if record.result is not None:
        item["result"] = {"S": json.dumps(record.result, ensure_ascii=False, separators=(",", ":"))}
    if record.args is not None or record.kwargs is not None:
        call = {"args": record.args, "kwargs": record.kwargs}
        item[CALL] = {"S": json.dumps(call, ensure_ascii=False, separators=(",", ":"))}
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if value is not None:
            item[name] = {"S": value}
    for name in _NUMBER_FIELDS:
        value = getattr(record, name)
        if value is not None:
            item[name] = _number(value)
    if record.expires_at is not None:
        item[res.RESULTS_TTL_ATTRIBUTE] = {"N": str(math.ceil(record.expires_at))}
        item[EXACT_EXPIRY] = _number(record.expires_at)
    return item


def from_item(item: dict[str, Any], result: Any = None, call: Any = None) -> ResultRecord:
    """The record of ``item``; ``result`` and ``call`` are the offloaded ones, already read."""

    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    if "result" in item:
        result = json.loads(item["result"]["S"])
    if CALL in item:
        call = json.loads(item[CALL]["S"])
    call = call if isinstance(call, dict) else {}
    expiry = item.get(EXACT_EXPIRY) or item.get(res.RESULTS_TTL_ATTRIBUTE)
    return ResultRecord(
        task_id=item[res.RESULTS_KEY]["S"],
        state=item["state"]["S"],
        task_name=text("task_name") or "",
        result=result,
        error_type=text("error_type"),
        error_message=text("error_message"),
        traceback=text("traceback"),
        attempts=int(item.get("attempts", {"N": "0"})["N"]),
        started_at=_read_number(item.get("started_at")),
        finished_at=_read_number(item.get("finished_at")),
        expires_at=_read_number(expiry),
        claim_owner=text("claim_owner"),
        claim_until=_read_number(item.get("claim_until")),
        args=call.get("args"),
        kwargs=call.get("kwargs"),
        queue=text("queue"),
        worker=text("worker"),
        sent_at=_read_number(item.get("sent_at")),
        **{name: text(name) for name in LINEAGE_IDS},
    )


def item_size(item: dict[str, dict[str, str]]) -> int:
    """An upper bound of DynamoDB's item size: names plus values as UTF-8."""
    return sum(len(name.encode()) + len(next(iter(value.values())).encode()) for name, value in item.items())


class DynamoDBResultStore(AWSBackend):
    """Result records in one DynamoDB table (created on first use unless create_missing is off)."""

    def __init__(
        self, table: str, *, bucket: str | None = None, create_missing: bool = True, config: AWSConfig | None = None
    ) -> None:
        if not _TABLE_NAME.match(table):
            raise ConfigurationError(
                f"DynamoDB table name {table!r} is not valid: 3-255 letters, digits, '_', '-' or '.' (dynamodb://TABLE)"
            )
        self.table = table
        self.create_missing = create_missing
        super().__init__(config)
        self.offload = (
            claim_checks(self.clients, bucket, f"cloudq-results/{table}/", create_missing, ResultStoreError)
            if bucket
            else None
        )
        self._create_lock = threading.Lock()
        self._created = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> DynamoDBResultStore:
        parts = urlsplit(url)
        table = parts.netloc or parts.path.strip("/")
        if not table:
            raise ConfigurationError(f"results URL {url!r} names no table: use dynamodb://TABLE")
        options = read_options(
            url,
            settings.results_options,
            COMMON_PARSERS,
            {"create_missing": settings.create_missing},
            base_name="results_options",
        )
        return cls(
            table,
            bucket=options.get("bucket"),
            create_missing=options["create_missing"],
            config=AWSConfig.from_options(options, settings.concurrency),
        )

    def __repr__(self) -> str:
        return f"<DynamoDBResultStore table={self.table!r} region={self.clients.region}>"

    # -- plumbing ---------------------------------------------------------------------------------

    def _db(self) -> Any:
        return self.clients.get("dynamodb")

    def _run(self, action: str, call: Callable[[], T]) -> T:
        """One request, with errors translated; a missing table is created once if allowed."""
        with translated(f"dynamodb:{action}", self.table, self.clients.endpoint("dynamodb"), ResultStoreError):
            try:
                return call()
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException" or not self.create_missing:
                    raise
                self._create_table()
                return call()

    def _create_table(self) -> None:
        with self._create_lock:
            if self._created:
                return
            db = self._db()
            try:
                db.create_table(**res.results_table_definition(self.table))
            except Exception as exc:
                if error_code(exc) != "ResourceInUseException":  # someone else is creating it
                    raise
            db.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
            try:
                db.update_time_to_live(**res.results_ttl_specification(self.table))
            except Exception as exc:
                if error_code(exc) != "ValidationException":  # TTL already enabled
                    raise
            self._created = True
            log.info("created DynamoDB results table %s (on-demand, TTL on %s)", self.table, res.RESULTS_TTL_ATTRIBUTE)

    def _record(self, item: dict[str, Any]) -> ResultRecord:
        """The record; an offloaded result is read only from this store's own bucket, prefix and
        task folder, never from wherever an item says (anyone who can write the table could
        otherwise have a reader fetch, and a later write delete, any object the role can reach)."""
        result, call = (
            json.loads(self._offloaded(item, ref).get(self._result_ref(item, ref), item[res.RESULTS_KEY]["S"]))
            if ref in item
            else None
            for ref in (RESULT_REF, CALL_REF)
        )
        return from_item(item, result, call)

    def _result_ref(self, item: dict[str, Any], attribute: str = RESULT_REF) -> Pointer:
        return parse_pointer(item[attribute]["S"], "s3")

    def _offloaded(self, item: dict[str, Any], attribute: str = RESULT_REF) -> ClaimCheckStore:
        """This store's offload, when the item's pointer (result or call) lies inside it; else ResultStoreError."""
        task_id = item[res.RESULTS_KEY]["S"]
        try:
            ref = self._result_ref(item, attribute)
        except CloudqError as exc:
            raise ResultStoreError(f"result record of task {task_id} in {self.table}: {exc}") from None
        if self.offload is None:
            raise ResultStoreError(
                f"the result of task {task_id} was offloaded to {ref}, but this store has no bucket to read it "
                f"from: configure the same one (dynamodb://{self.table}?bucket={ref.bucket})"
            )
        if not self.offload.owns(ref, task_id):
            raise ResultStoreError(
                f"result record of task {task_id} in {self.table} points to {ref}, outside this store's "
                f"{self.offload.where(task_id)}: not read (a forged or foreign record)"
            )
        return self.offload

    @staticmethod
    def _live(item: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
        """The item when it is a task record that has not expired (counters are never records)."""
        if not item or KIND in item:
            return None
        expiry = _read_number(item.get(EXACT_EXPIRY) or item.get(res.RESULTS_TTL_ATTRIBUTE))
        return None if expiry is not None and expiry <= now else item

    # -- ResultStore ------------------------------------------------------------------------------

    def _get_request(self, task_id: str) -> dict[str, Any]:
        return {"TableName": self.table, "Key": {res.RESULTS_KEY: {"S": task_id}}, "ConsistentRead": True}

    def get(self, task_id: str) -> ResultRecord | None:
        response = self._run(  # the producer client: AsyncResult.get waits on it
            "GetItem", lambda: self.clients.get("dynamodb", producer=True).get_item(**self._get_request(task_id))
        )
        item = self._live(response.get("Item"), time.time())
        return self._record(item) if item else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """Strongly consistent BatchGetItem requests of up to 100 distinct keys; the keys DynamoDB
        leaves unprocessed (throttling, or past 16 MB in one response) are asked again, at once
        while a round makes progress and with backoff while it does not. Through the producer
        client: group results are read by producers, like ``get``."""
        return self._get_many(task_ids, producer=True)

    def get_many_in_runtime(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """``get_many`` through the client the result writes use (RuntimeReader)."""
        return self._get_many(task_ids, producer=False)

    def _get_many(self, task_ids: Sequence[str], producer: bool) -> dict[str, ResultRecord]:
        now = time.time()
        found: dict[str, ResultRecord] = {}
        for batch in chunks(list(dict.fromkeys(task_ids)), BATCH_GET_KEYS):
            for item in self._batch_get([{res.RESULTS_KEY: {"S": task_id}} for task_id in batch], producer):
                live = self._live(item, now)
                if live is not None:
                    record = self._record(live)
                    found[record.task_id] = record
        return found

    def _batch_get(self, keys: list[dict[str, Any]], producer: bool = True) -> list[dict[str, Any]]:
        """The items of ``keys`` (at most BATCH_GET_KEYS) that exist, through as many rounds as it takes."""
        db = self.clients.get("dynamodb", producer=producer)
        items: list[dict[str, Any]] = []
        pause, idle = UNPROCESSED_FIRST_PAUSE_S, 0
        while keys:
            request = {self.table: {"Keys": keys, "ConsistentRead": True}}
            response = self._run("BatchGetItem", functools.partial(db.batch_get_item, RequestItems=request))
            got = response.get("Responses", {}).get(self.table, [])
            items.extend(got)
            left = len(keys)
            keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            if not keys:
                break
            if got or len(keys) < left:
                pause, idle = UNPROCESSED_FIRST_PAUSE_S, 0
                continue
            idle += 1
            if idle >= UNPROCESSED_ROUNDS:
                raise ResultStoreError(
                    f"dynamodb:BatchGetItem on {self.table}: {len(keys)} keys still unprocessed after "
                    f"{UNPROCESSED_ROUNDS} rounds with backoff (the table is throttling reads)"
                )
            time.sleep(pause * (0.5 + random.random() / 2))
            pause = min(pause * 2, UNPROCESSED_MAX_PAUSE_S)
        return items

    def set(self, record: ResultRecord) -> bool:
        """One conditional PutItem: written unless a live terminal record exists."""
        check_task_id(record.task_id)
        item, refs = self._fit(record)
        values = {**_TERMINAL, ":now": _number(time.time())}
        condition = f"attribute_not_exists({res.RESULTS_KEY}) OR {_NOT_TERMINAL} OR NOT {_LIVE}"

        def put() -> dict[str, Any] | None:
            try:
                response = self._db().put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_OLD",
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return None
                raise
            old: dict[str, Any] = response.get("Attributes") or {}
            return old

        old = self._run("PutItem", put)
        if old is None:
            if refs and self.offload is not None:
                self.offload.delete(refs)
            return False
        self._drop_offloaded(old)
        return True

    def _fit(self, record: ResultRecord) -> tuple[dict[str, dict[str, str]], list[Pointer]]:
        """The item for ``record``, with the result and the call moved to S3 (the larger first) or
        long texts shortened, when it would exceed DynamoDB's item size limit."""
        item = to_item(record)
        limit = res.DYNAMODB_MAX_ITEM_BYTES - ITEM_MARGIN_BYTES
        if item_size(item) <= limit:  # nearly every record: sized once
            return item, []
        refs: list[Pointer] = []
        movable = sorted((n for n in _OFFLOADABLE if n[0] in item), key=lambda n: -len(item[n[0]]["S"].encode()))
        if item_size(item) - sum(len(item[name]["S"].encode()) for name, _ in movable) < limit:
            for name, ref_name in movable:  # moving them makes it fit
                if item_size(item) <= limit:
                    break
                text = item[name]["S"]
                if self.offload is None:
                    what = "result" if name == "result" else "extended result (args and kwargs)"
                    raise ResultTooLarge(
                        f"{what} of task {record.task_id} is {len(text.encode())} bytes of JSON; a DynamoDB item "
                        f"holds {res.DYNAMODB_MAX_ITEM_BYTES}: configure an S3 bucket (dynamodb://{self.table}?bucket=NAME)"
                    )
                del item[name]
                refs.append(self.offload.put(text.encode(), record.task_id))
                item[ref_name] = {"S": pointer_text(refs[-1], len(text))}
            return item, refs
        for name in ("traceback", "error_message"):  # keep a failure recordable: keep the ends of long texts
            if name in item and item_size(item) > limit:
                text = item[name]["S"]
                excess = item_size(item) - limit + 64
                keep = max(0, len(text.encode()) - excess) // 4  # worst case 4 bytes per character
                item[name] = {"S": f"[{len(text) - keep} characters cut to fit DynamoDB's item limit]\n{text[-keep:]}"}
        if item_size(item) > limit:
            raise ResultTooLarge(
                f"record of task {record.task_id} does not fit in a DynamoDB item even without its result"
            )
        return item, refs

    def _drop_offloaded(self, old: dict[str, Any]) -> None:
        """Delete the replaced record's offloaded result and call, if they are this store's own objects."""
        for _, ref in _OFFLOADABLE:
            if ref not in old:
                continue
            try:
                offload = self._offloaded(old, ref)
            except ResultStoreError as exc:  # never delete what the store did not write
                log.warning("left an offloaded result in place: %s", exc)
                continue
            offload.delete([self._result_ref(old, ref)])

    def claim(self, task_id: str, owner: str, until: float, task_name: str = "") -> Claim:
        """One conditional UpdateItem; on refusal DynamoDB returns the holder's record with it."""
        check_task_id(task_id)
        now = time.time()
        values = {
            **_TERMINAL,
            ":now": _number(now),
            ":owner": {"S": owner},
            ":until": _number(until),
            ":started": {"S": states.STARTED},
            ":name": {"S": task_name},
            ":zero": {"N": "0"},
        }
        update = (
            "SET #state = :started, #task_name = :name, #started_at = :now, claim_owner = :owner, "
            f"claim_until = :until, {res.INDEX_SORT} = :now, #attempts = if_not_exists(#attempts, :zero) "
            "REMOVE #result, #error_type, #error_message, #traceback, #finished_at"
        )
        names = {f"#{n}": n for n in ("result", "task_name", "started_at", "attempts", "error_type", "error_message")}
        names.update({"#state": "state", "#traceback": "traceback", "#finished_at": "finished_at"})
        condition = f"attribute_not_exists({res.RESULTS_KEY}) OR ({_LIVE} AND {_NOT_TERMINAL} AND {_UNCLAIMED})"

        def update_item() -> dict[str, Any] | None:
            try:
                self._db().update_item(
                    TableName=self.table,
                    Key={res.RESULTS_KEY: {"S": task_id}},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    current: dict[str, Any] = getattr(exc, "response", {}).get("Item") or {}
                    return current
                raise
            return None

        current = self._run("UpdateItem", update_item)
        if current is None:
            return Claim(True, None)
        if self._live(current, now) is None:
            return self._claim_expired(task_id, owner, until, task_name, current, now)
        return Claim(False, self._record(current))

    def _claim_expired(
        self, task_id: str, owner: str, until: float, task_name: str, old: dict[str, Any], now: float
    ) -> Claim:
        """The item is past its expiry (DynamoDB has not deleted it yet): replace it with a fresh
        claim, on condition that it is still the same expired item."""
        fresh = to_item(
            ResultRecord(task_id, states.STARTED, task_name, started_at=now, claim_owner=owner, claim_until=until)
        )
        if self._replace_expired(old, fresh):
            self._drop_offloaded(old)
            return Claim(True, None)
        return self.claim(task_id, owner, until, task_name)  # someone replaced it first: decide again

    def _replace_expired(self, old: dict[str, Any], fresh: dict[str, Any]) -> bool:
        """One PutItem of ``fresh`` over the expired item ``old``, on condition that it is still
        that item (same expiry); False when someone replaced it first."""
        attribute = EXACT_EXPIRY if EXACT_EXPIRY in old else res.RESULTS_TTL_ATTRIBUTE

        def put() -> bool:
            try:
                self._db().put_item(
                    TableName=self.table,
                    Item=fresh,
                    ConditionExpression=f"{attribute} = :old",
                    ExpressionAttributeValues={":old": old[attribute]},
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
            return True

        return self._run("PutItem", put)

    def forget(self, task_id: str) -> None:
        response = self._run(
            "DeleteItem",
            lambda: self._db().delete_item(
                TableName=self.table, Key={res.RESULTS_KEY: {"S": task_id}}, ReturnValues="ALL_OLD"
            ),
        )
        self._drop_offloaded(response.get("Attributes") or {})

    # -- AtomicCounter ----------------------------------------------------------------------------

    def increment(self, key: str, by: int = 1, expires_at: float | None = None) -> int:
        """One UpdateItem ``ADD count :by`` returning the new total (UPDATED_NEW), on condition that
        the item is absent or a live counter. The expiry given when the counter is created stays
        (the TTL attribute lets DynamoDB delete an abandoned one); an expired counter DynamoDB has
        not deleted yet is replaced by a fresh one (a second, conditional request)."""
        item_id = counter_id(key, by)
        values: dict[str, Any] = {":by": {"N": str(by)}, ":counter": {"S": COUNTER_KIND}}
        update = "SET #kind = :counter ADD #count :by"
        if expires_at is not None:
            values.update({":ttl": {"N": str(math.ceil(expires_at))}, ":exact": _number(expires_at)})
            update = (
                f"SET #kind = :counter, {res.RESULTS_TTL_ATTRIBUTE} = if_not_exists({res.RESULTS_TTL_ATTRIBUTE}, :ttl), "
                f"{EXACT_EXPIRY} = if_not_exists({EXACT_EXPIRY}, :exact) ADD #count :by"
            )
        for _ in range(MAX_COUNTER_RESETS):
            values[":now"] = _number(time.time())
            request = {
                "TableName": self.table,
                "Key": {res.RESULTS_KEY: {"S": item_id}},
                "UpdateExpression": update,
                "ConditionExpression": f"attribute_not_exists({res.RESULTS_KEY}) OR (#kind = :counter AND {_LIVE})",
                "ExpressionAttributeNames": {"#kind": KIND, "#count": COUNT},
                "ExpressionAttributeValues": values,
                "ReturnValues": "UPDATED_NEW",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
            new, old = self._run("UpdateItem", functools.partial(self._conditional_update, request))
            if new is not None:
                return int(new[COUNT]["N"])
            if self._replace_expired_counter(item_id, old, by, expires_at):
                return by
        raise ResultStoreError(
            f"gave up incrementing counter {key!r} in {self.table}: it kept expiring and being replaced"
        )

    def _conditional_update(self, request: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the updated attributes, None) or (None, the item whose condition failed)."""
        try:
            return self._db().update_item(**request).get("Attributes", {}), {}
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None, getattr(exc, "response", {}).get("Item") or {}
            raise

    def _replace_expired_counter(self, item_id: str, old: dict[str, Any], by: int, expires_at: float | None) -> bool:
        """Put a fresh counter over an expired one, on condition that it is still that one."""
        if old.get(KIND, {}).get("S") != COUNTER_KIND:
            raise ResultStoreError(f"counter item {item_id!r} in {self.table} is not a counter (a task record?)")
        expiry = _read_number(old.get(EXACT_EXPIRY) or old.get(res.RESULTS_TTL_ATTRIBUTE))
        if expiry is None or counter_live(expiry, time.time()):
            return False  # changed since the failed update: ask again
        item = {res.RESULTS_KEY: {"S": item_id}, KIND: {"S": COUNTER_KIND}, COUNT: {"N": str(by)}}
        if expires_at is not None:
            item[res.RESULTS_TTL_ATTRIBUTE] = {"N": str(math.ceil(expires_at))}
            item[EXACT_EXPIRY] = _number(expires_at)
        return self._replace_expired(old, item)

    def delete_counter(self, key: str) -> None:
        """One DeleteItem, on condition that the item is a counter (or absent)."""
        item_id = counter_id(key)

        def delete() -> None:
            try:
                self._db().delete_item(
                    TableName=self.table,
                    Key={res.RESULTS_KEY: {"S": item_id}},
                    ConditionExpression=f"attribute_not_exists({res.RESULTS_KEY}) OR #kind = :counter",
                    ExpressionAttributeNames={"#kind": KIND},
                    ExpressionAttributeValues={":counter": {"S": COUNTER_KIND}},
                )
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                raise ResultStoreError(f"item {item_id!r} in {self.table} is not a counter: not deleted") from None

        self._run("DeleteItem", delete)

    # -- HeartbeatStore ---------------------------------------------------------------------------

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        """One PutItem of a small item (``cloudq.worker:<id>``, kind ``worker``) under the index
        partition WORKER_STATE, with the table's TTL attribute: ``get`` never returns it."""
        until = heartbeat.seen_at + ttl_s
        item = {
            res.RESULTS_KEY: {"S": WORKER_PREFIX + heartbeat.worker_id},
            KIND: {"S": WORKER_KIND},
            res.INDEX_PARTITION: {"S": WORKER_STATE},
            res.INDEX_SORT: _number(heartbeat.seen_at),
            "info": {"S": json.dumps(dict(heartbeat.info), ensure_ascii=False, separators=(",", ":"))},
            res.RESULTS_TTL_ATTRIBUTE: {"N": str(math.ceil(until))},
            EXACT_EXPIRY: _number(until),
        }
        self._run("PutItem", lambda: self._db().put_item(TableName=self.table, Item=item))

    def alive(self) -> list[Heartbeat]:
        """One Query of the index's WORKER_STATE partition (more only past 1 MB of records)."""
        beats = []
        for item in self._query_index(WORKER_STATE, None, None):
            worker_id = item[res.RESULTS_KEY]["S"].removeprefix(WORKER_PREFIX)
            beats.append(Heartbeat(worker_id, float(item[res.INDEX_SORT]["N"]), json.loads(item["info"]["S"])))
        return beats

    # -- TaskIndex --------------------------------------------------------------------------------

    def recent(self, states: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[TaskSummary]:
        """One Query per state (newest first, stopping at ``limit`` live records), merged. The
        index is eventually consistent: a write shows up within about a second."""
        found: list[TaskSummary] = []
        for state in states or _ALL_STATES:
            for item in self._query_index(state, since, limit):
                found.append(
                    TaskSummary(
                        item[res.RESULTS_KEY]["S"],
                        item.get("task_name", {}).get("S", ""),
                        state,
                        float(item[res.INDEX_SORT]["N"]),
                    )
                )
        found.sort(key=lambda summary: summary.updated_at, reverse=True)
        return found[:limit]

    @staticmethod
    def _expired(item: dict[str, Any], now: float) -> bool:
        expiry = _read_number(item.get(EXACT_EXPIRY) or item.get(res.RESULTS_TTL_ATTRIBUTE))
        return expiry is not None and expiry <= now

    def _query_index(self, partition: str, since: float | None, limit: int | None) -> list[dict[str, Any]]:
        """Live items of one index partition, newest first: pages until ``limit`` (None: all) are
        found (expired ones DynamoDB has not deleted yet are read, and skipped)."""
        condition = "#state = :state"
        values: dict[str, Any] = {":state": {"S": partition}}
        if since is not None:
            condition += f" AND {res.INDEX_SORT} >= :since"
            values[":since"] = _number(since)
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": res.INDEX_NAME,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#state": res.INDEX_PARTITION},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if limit is not None:
            request["Limit"] = limit
        items: list[dict[str, Any]] = []
        while True:
            response = self._run("Query", functools.partial(self._query, request))
            now = time.time()
            items.extend(item for item in response.get("Items", []) if not self._expired(item, now))
            start = response.get("LastEvaluatedKey")
            if not start or (limit is not None and len(items) >= limit):
                return items
            request["ExclusiveStartKey"] = start

    def _query(self, request: dict[str, Any]) -> dict[str, Any]:
        """A Query of the index; a table made before the index existed gets it added (with
        create_missing) or a precise error."""
        db = self._db()
        try:
            response: dict[str, Any] = db.query(**request)
            return response
        except Exception as exc:
            # DynamoDB says ValidationException ("does not have the specified index"); moto ResourceNotFound
            if error_code(exc) not in ("ValidationException", "ResourceNotFoundException") or res.INDEX_NAME not in str(
                exc
            ):
                raise
        if not self.create_missing:
            raise ResultStoreError(
                f"DynamoDB table {self.table} has no index {res.INDEX_NAME} (made by an older cloudq): "
                "run `cloudq deploy`, or allow create_missing once so cloudq adds it"
            )
        try:
            db.update_table(**res.add_index_request(self.table))
            log.info(
                "adding index %s to DynamoDB table %s (it backfills; listings work once ACTIVE)",
                res.INDEX_NAME,
                self.table,
            )
        except Exception as exc:
            if error_code(exc) not in ("ResourceInUseException", "ValidationException", "LimitExceededException"):
                raise
        raise ResultStoreError(
            f"DynamoDB table {self.table}: index {res.INDEX_NAME} is being added (it backfills the "
            "existing records); try again in a minute"
        )

    async def get_async(self, task_id: str) -> ResultRecord | None:
        """``get`` on aiobotocore, for callers in an event loop: one strongly consistent GetItem;
        creating a missing table and reading an offloaded result run in a thread."""
        import asyncio

        db = await self.async_clients.get("dynamodb")
        try:
            with translated("dynamodb:GetItem", self.table, self.clients.endpoint("dynamodb"), ResultStoreError):
                response = await db.get_item(**self._get_request(task_id))
        except TableNotFound:
            if not self.create_missing:
                raise
            await asyncio.to_thread(self.get, task_id)  # creates the table
            return None
        item = self._live(response.get("Item"), time.time())
        if not item:
            return None
        if RESULT_REF in item or CALL_REF in item:
            return await asyncio.to_thread(self._record, item)
        return from_item(item)
