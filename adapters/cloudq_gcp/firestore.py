"""``firestore://COLLECTION``: the cloudq ResultStore on Cloud Firestore (project from ``?project=``
or ``GOOGLE_CLOUD_PROJECT``).

One document per task id (firestore_records.py has the fields). Writes are compare-and-set with
preconditions rather than transactions: a terminal write first tries ``create()`` (one request,
and the first terminal write wins when there is no document yet); otherwise it reads the document
and replaces it with an ``update`` conditioned on the ``update_time`` it read, retrying if someone
wrote in between. That gives the same all-fields-or-nothing guarantee as a transaction in two
requests instead of three, and takes no locks, so racing writers (and the emulator, which makes a
contended transaction wait 2 s) are not slowed down. ``claim`` works the same way.

``wait`` (used by ``AsyncResult.get``) listens to the document with ``on_snapshot`` and wakes when a
terminal record lands: no polling loop. Where a listener cannot be started or dies (or with
``?listen=false``) it polls with backoff. Results that would push a document over Firestore's
1 MiB go to a GCS bucket (``?bucket=``), else ``ResultTooLarge``.

Expired documents read as absent; a Firestore TTL policy on ``expires_at`` (which ``cloudq deploy``
sets up) deletes them eventually.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cloudq.backends.common import COUNTER_KIND, check_task_id, counter_id
from cloudq.errors import ResultStoreError, ResultTooLarge
from cloudq.interfaces import Claim, Heartbeat, ResultRecord, TaskSummary
from cloudq.states import STARTED, TERMINAL_STATES
from cloudq.util.chunks import chunks
from cloudq.util.polling import PollSchedule

from . import firestore_records as fr
from .deadline import Deadline
from .errors import FIRESTORE, translated
from .gcs import GCSOffload
from .options import FirestoreOptions

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud.firestore import Client, DocumentReference
    from google.cloud.firestore import DocumentSnapshot as _Snapshot

    DocumentSnapshot = _Snapshot[Any]

    from cloudq.config import Settings

_JSON_FIELDS = ((fr.RESULT_JSON, fr.RESULT_REF), (fr.CALL_JSON, fr.CALL_REF))  # inline text, offloaded ref
log = logging.getLogger("cloudq.firestore")
T = TypeVar("T")

MAX_CONFLICTS = 50  # compare-and-set rounds before giving up (each lost round means another writer won)
POLL_MIN_S = 0.05  # the first pause of a polling waiter (each poll is a billed read)
POLL_MAX_S = 1.0
BATCH_GET_DOCUMENTS = 100  # documents per BatchGetDocuments stream (billed per document, not per request)
LISTENER_CHECK_S = 1.0  # how often a waiter checks that its listener is still alive


class FirestoreResultStore:
    def __init__(self, options: FirestoreOptions) -> None:
        self.options = options
        self.offload = (
            GCSOffload(
                options.bucket,
                f"{options.collection.replace('/', '-')}/results/",
                options.project,
                create_missing=options.create_missing,
            )
            if options.bucket
            else None
        )
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # requests made, by method (listeners not included)
        self._client: Client | None = None
        self._retry: Retry | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> FirestoreResultStore:
        return cls(FirestoreOptions.from_url(url, settings))

    def __repr__(self) -> str:
        return f"<FirestoreResultStore project={self.options.project} collection={self.options.collection}>"

    # -- plumbing -------------------------------------------------------------------------------

    def _db(self) -> Client:
        if self._client is None:
            with self._lock, translated(FIRESTORE, "creating the Firestore client"):
                if self._client is None:
                    from google.api_core import retry
                    from google.cloud import firestore

                    self._retry = retry.Retry(
                        predicate=retry.if_transient_error, initial=0.1, maximum=2.0, timeout=self.options.timeout
                    )
                    self._client = firestore.Client(project=self.options.project, database=self.options.database)
        return self._client

    def _doc(self, task_id: str) -> DocumentReference:
        return self._db().collection(self.options.collection).document(fr.document_id(task_id))

    def _run(
        self,
        action: str,
        call: Callable[..., T],
        *args: Any,
        expected: tuple[type[Exception], ...] = (),
        deadline: Deadline | None = None,
        **kwargs: Any,
    ) -> T:
        """Call with this store's retry and timeout, or within ``deadline``; ``expected`` errors
        reach the caller untranslated."""
        self._db()
        assert self._retry is not None
        with self._lock:
            self.requests[call.__name__] += 1
        action = f"{action} in {self.options.collection}"
        with translated(FIRESTORE, action, keep=expected):
            limits = {"retry": self._retry, "timeout": self.options.timeout}
            return call(*args, **(deadline.request(self._retry, action) if deadline else limits), **kwargs)

    def _read(self, ref: DocumentReference, deadline: Deadline | None = None) -> DocumentSnapshot:
        return self._run(f"reading {ref.id}", ref.get, deadline=deadline)

    def _record(self, fields: dict[str, Any]) -> ResultRecord:
        result, call = (self._json(fields, text, ref) for text, ref in _JSON_FIELDS)
        return fr.from_fields(fields, result, call)

    def _json(self, fields: dict[str, Any], text: str, ref: str) -> Any:
        """A JSON field's value, read from Cloud Storage when it was offloaded."""
        if ref in fields:
            return json.loads(self._offload().get(fields[ref]))
        return json.loads(fields[text]) if text in fields else None

    @staticmethod
    def _live(snapshot: DocumentSnapshot, now: float) -> dict[str, Any] | None:
        """The fields of a task record that has not expired (a counter is never a record)."""
        fields = snapshot.to_dict() if snapshot.exists else None
        if fields is None or fields.get(fr.KIND) == COUNTER_KIND or fr.expired(fields, now):
            return None
        return fields

    def _offload(self) -> GCSOffload:
        if self.offload is None:
            raise ResultStoreError("a result was offloaded to Cloud Storage, but this store has no ?bucket= to read it")
        return self.offload

    # -- ResultStore ----------------------------------------------------------------------------

    def get(self, task_id: str) -> ResultRecord | None:
        """One read within ``send_timeout``: callers (``.status``, ``.get()``) wait on it."""
        fields = self._live(self._read(self._doc(task_id), Deadline(self.options.send_timeout, FIRESTORE)), time.time())
        return self._record(fields) if fields is not None else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """BatchGetDocuments (``get_all``, no transaction) of up to BATCH_GET_DOCUMENTS documents
        per request, each bounded by ``send_timeout`` like ``get``."""
        found: dict[str, ResultRecord] = {}
        for batch in chunks(list(dict.fromkeys(task_ids)), BATCH_GET_DOCUMENTS):
            refs = [self._doc(task_id) for task_id in batch]
            deadline = Deadline(self.options.send_timeout, FIRESTORE)
            snapshots = self._run(f"reading {len(refs)} documents", self._batch_get_documents, refs, deadline=deadline)
            now = time.time()
            for snapshot in snapshots:
                fields = self._live(snapshot, now)
                if fields is not None:
                    record = self._record(fields)
                    found[record.task_id] = record
        return found

    def _batch_get_documents(self, refs: list[DocumentReference], **limits: Any) -> list[DocumentSnapshot]:
        """One BatchGetDocuments stream, read to its end (inside ``_run``'s error translation)."""
        return list(self._db().get_all(refs, **limits))

    def set(self, record: ResultRecord) -> bool:
        check_task_id(record.task_id)
        ref = self._doc(record.task_id)
        fields = self._fields(record, ref.path)
        if record.terminal and self._create(ref, fields):  # the common case: one request
            return True
        for _ in range(MAX_CONFLICTS):
            snapshot = self._read(ref)
            current = self._live(snapshot, time.time())
            if current is not None and current["state"] in TERMINAL_STATES:
                self._drop_result(fields)
                return False
            if self._replace(ref, snapshot, fields):
                return True
        raise ResultStoreError(f"gave up writing {record.task_id} after {MAX_CONFLICTS} conflicting writes")

    def _fields(self, record: ResultRecord, path: str) -> dict[str, Any]:
        """The document, with the result and the call offloaded (the larger first) when it would not fit."""
        texts = {fr.RESULT_REF: fr.result_text(record), fr.CALL_REF: fr.call_text(record)}
        refs: dict[str, str] = {}

        def document() -> dict[str, Any]:
            inline = {ref: None if ref in refs else text for ref, text in texts.items()}
            return fr.to_fields(
                record,
                inline[fr.RESULT_REF],
                refs.get(fr.RESULT_REF),
                call_json=inline[fr.CALL_REF],
                call_ref=refs.get(fr.CALL_REF),
            )

        fields = document()
        if fr.fits(fields, path):
            return fields
        if self.offload is not None:
            for ref in sorted((r for r, t in texts.items() if t is not None), key=lambda r: -len(texts[r] or "")):
                refs[ref] = self.offload.put((texts[ref] or "").encode(), "application/json")
                fields = document()
                if fr.fits(fields, path):
                    return fields
            for ref in refs.values():
                self.offload.delete(ref)
        size = fr.size_estimate(fields, path)
        hint = (
            ""
            if self.offload is not None
            else "; set ?bucket=BUCKET on the firestore:// URL to keep large results in Cloud Storage"
        )
        raise ResultTooLarge(
            f"result record of task {record.task_id} is about {size} bytes; a Firestore document holds "
            f"{fr.FIRESTORE_MAX_DOCUMENT_BYTES}{hint}"
        )

    def _create(self, ref: DocumentReference, fields: dict[str, Any]) -> bool:
        from google.api_core.exceptions import AlreadyExists

        try:
            self._run(f"creating {ref.id}", ref.create, fields, expected=(AlreadyExists,))
        except AlreadyExists:
            return False
        return True

    def _replace(self, ref: DocumentReference, snapshot: DocumentSnapshot, fields: dict[str, Any]) -> bool:
        """Write ``fields`` as the whole document unless it changed since ``snapshot``."""
        from google.api_core.exceptions import FailedPrecondition, NotFound
        from google.cloud.firestore import DELETE_FIELD

        if not snapshot.exists:
            return self._create(ref, fields)
        update = {name: fields.get(name, DELETE_FIELD) for name in fr.FIELDS}
        option = self._db().write_option(last_update_time=snapshot.update_time)
        try:
            self._run(f"updating {ref.id}", ref.update, update, option=option, expected=(FailedPrecondition, NotFound))
        except (FailedPrecondition, NotFound):  # someone wrote (or deleted) in between: look again
            return False
        self._drop_result(snapshot.to_dict() or {}, keep=fields)
        return True

    def _drop_result(self, fields: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
        """Delete the document's offloaded result and call (but those ``keep`` still points to)."""
        for name in fr.REFS:
            ref = fields.get(name)
            if not ref or self.offload is None or (keep is not None and keep.get(name) == ref):
                continue
            try:
                self.offload.delete(ref)
            except Exception as exc:  # only storage is lost; a lifecycle rule cleans up
                log.warning("could not delete offloaded result %s: %s", ref, exc)

    def claim(self, task_id: str, owner: str, until: float, task_name: str = "") -> Claim:
        check_task_id(task_id)
        ref = self._doc(task_id)
        for _ in range(MAX_CONFLICTS):
            snapshot = self._read(ref)
            now = time.time()
            current = self._live(snapshot, now)
            if current is not None:
                record = self._record(current)
                held = record.claim_until is not None and record.claim_until > now and record.claim_owner != owner
                if record.terminal or held:
                    return Claim(False, record)
            claimed = ResultRecord(
                task_id, STARTED, task_name, started_at=now, claim_owner=owner, claim_until=until,
                attempts=current.get("attempts", 0) if current else 0,
                expires_at=current.get(fr.EXPIRES_EXACT) if current else None,
            )  # fmt: skip
            if self._replace(ref, snapshot, fr.to_fields(claimed, None, None)):
                return Claim(True, None)
        raise ResultStoreError(f"gave up claiming {task_id} after {MAX_CONFLICTS} conflicting writes")

    def forget(self, task_id: str) -> None:
        ref = self._doc(task_id)
        if self.offload is not None:
            snapshot = self._read(ref)
            if snapshot.exists:
                self._drop_result(snapshot.to_dict() or {})
        self._run(f"deleting {ref.id}", ref.delete)

    # -- AtomicCounter --------------------------------------------------------------------------

    def increment(self, key: str, by: int = 1, expires_at: float | None = None) -> int:
        """One write, no transaction: a merge with two server-side transforms, ``Increment`` on the
        count and ``Minimum`` on the exact expiry, whose results come back in the commit response.
        So concurrent increments never conflict and each sees its own total, and the returned
        expiry says whether the counter had expired (then it is replaced, on condition that no one
        wrote since: a second request). The expiry given at creation stays (the earliest one given)."""
        from google.api_core.exceptions import FailedPrecondition, NotFound
        from google.cloud.firestore import Increment, Minimum

        ref = self._doc(counter_id(key, by))
        expiry = fr.NO_EXPIRY if expires_at is None else float(expires_at)
        fields: dict[str, Any] = {fr.KIND: COUNTER_KIND, fr.COUNT: Increment(by), fr.EXPIRES_EXACT: Minimum(expiry)}
        fields.update(fr.expiry_timestamp(expires_at))
        for _ in range(MAX_CONFLICTS):
            written = self._run(f"incrementing {ref.id}", ref.set, fields, merge=True)
            # the transforms' results, in field-path order: count, expires_exact
            count, until = (fr.number(value) for value in written.transform_results)
            if until > time.time():
                return int(count)
            fresh = {fr.COUNT: by, fr.EXPIRES_EXACT: expiry, **fr.expiry_timestamp(expires_at, delete=True)}
            option = self._db().write_option(last_update_time=written.update_time)
            try:  # it had expired: start again from ``by``, unless someone wrote in between
                self._run(
                    f"resetting {ref.id}", ref.update, fresh, option=option, expected=(FailedPrecondition, NotFound)
                )
                return by
            except (FailedPrecondition, NotFound):
                continue
        raise ResultStoreError(f"gave up incrementing counter {key!r} after {MAX_CONFLICTS} conflicting writes")

    def delete_counter(self, key: str) -> None:
        ref = self._doc(counter_id(key))
        self._run(f"deleting {ref.id}", ref.delete)

    # -- HeartbeatStore -------------------------------------------------------------------------

    def _workers(self) -> Any:
        return self._db().collection(self.options.collection + fr.WORKERS_SUFFIX)

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        """One write to the ``<collection>-workers`` collection (``expires_at`` for a TTL policy)."""
        until = heartbeat.seen_at + ttl_s
        fields = {
            "worker_id": heartbeat.worker_id,
            "seen_at": heartbeat.seen_at,
            "info": json.dumps(dict(heartbeat.info), ensure_ascii=False, separators=(",", ":")),
            fr.EXPIRES_EXACT: until,
            **fr.expiry_timestamp(until),
        }
        ref = self._workers().document(fr.document_id(heartbeat.worker_id))
        self._run(f"writing presence {ref.id}", ref.set, fields)

    def alive(self) -> list[Heartbeat]:
        """One query on ``expires_exact`` (a single-field index: none to define)."""
        from google.cloud.firestore import FieldFilter

        query = self._workers().where(filter=FieldFilter(fr.EXPIRES_EXACT, ">", time.time()))
        snapshots = self._run("listing live workers", self._stream, query)
        beats = []
        for snapshot in snapshots:
            fields = snapshot.to_dict() or {}
            beats.append(Heartbeat(fields["worker_id"], fields["seen_at"], json.loads(fields["info"])))
        return beats

    @staticmethod
    def _stream(query: Any, **limits: Any) -> list[DocumentSnapshot]:
        return list(query.stream(**limits))

    # -- TaskIndex ------------------------------------------------------------------------------

    def recent(self, states: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[TaskSummary]:
        """One query ordered by ``updated_at`` (newest first). Without states it needs only
        Firestore's automatic single-field index; with states (``state IN [...]``) production
        needs the composite index (state ASC, updated_at DESC) that ``cloudq deploy`` defines
        (the emulator needs none). Expired records are skipped, so a listing may come back
        shorter than ``limit`` while expired documents await their TTL deletion."""
        from google.cloud.firestore import FieldFilter, Query

        query: Any = self._db().collection(self.options.collection)
        if states:
            query = query.where(filter=FieldFilter("state", "in", list(states)))
        if since is not None:
            query = query.where(filter=FieldFilter(fr.UPDATED_AT, ">=", since))
        query = query.order_by(fr.UPDATED_AT, direction=Query.DESCENDING).limit(limit)
        snapshots = self._run("listing recent tasks", self._stream, query)
        now = time.time()
        found = []
        for snapshot in snapshots:
            fields = snapshot.to_dict() or {}
            if fields.get(fr.KIND) == COUNTER_KIND or fr.expired(fields, now):
                continue
            found.append(
                TaskSummary(fields["task_id"], fields.get("task_name", ""), fields["state"], fields[fr.UPDATED_AT])
            )
        return found

    # -- waiting --------------------------------------------------------------------------------

    def wait(self, task_id: str, timeout: float | None) -> ResultRecord | None:
        """The terminal record as soon as it is written, or the latest record after ``timeout``."""
        schedule = PollSchedule(timeout, POLL_MAX_S, first=POLL_MIN_S)  # one deadline for listening and polling
        record = self.get(task_id)
        if record is not None and record.terminal:
            return record
        if self.options.listen:
            done = self._listen(task_id, schedule.deadline)
            if done is not None:
                return done
        return self._poll(task_id, schedule)

    def _listen(self, task_id: str, deadline: float | None) -> ResultRecord | None:
        """Wait on a snapshot listener. None when it timed out (the caller re-reads) or failed."""
        landed = threading.Event()
        found: list[dict[str, Any]] = []

        def on_snapshot(snapshots: list[DocumentSnapshot], changes: Any, read_time: Any) -> None:
            for snapshot in snapshots:
                fields = self._live(snapshot, time.time())
                if fields is not None and fields["state"] in TERMINAL_STATES:
                    found.append(fields)
                    landed.set()

        try:
            watch = self._doc(task_id).on_snapshot(on_snapshot)
        except Exception as exc:  # no listener here (e.g. a proxy without streaming): poll instead
            log.info("snapshot listener unavailable (%s); polling for %s", exc, task_id)
            return None
        try:
            while not landed.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                landed.wait(LISTENER_CHECK_S if left is None else min(LISTENER_CHECK_S, left))
                if not landed.is_set() and not watch.is_active:
                    log.info("snapshot listener for %s stopped; polling instead", task_id)
                    return None
        finally:
            watch.unsubscribe()  # type: ignore[no-untyped-call]
        return self._record(found[0])

    def _poll(self, task_id: str, schedule: PollSchedule) -> ResultRecord | None:
        """Read until the record is terminal or the schedule's deadline passed (the fallback of a listener)."""
        while True:
            record = self.get(task_id)
            if (record is not None and record.terminal) or schedule.expired():
                return record
            time.sleep(schedule.next_pause())

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
        if self.offload is not None:
            self.offload.close()
