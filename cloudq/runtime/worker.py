"""The container worker: ``cloudq worker -A module:app``.

Pieces, one module each: the Inbox (prefetch buffer; the idle pool slot receives for everyone),
the Consumer (fair batched receives), a pool of slots that run deliveries in their own thread or
in a child process (pools.py), the Acker (outcomes -> batched broker calls) and the Heartbeat
(lease extension). This module wires them together and owns the lifecycle: signals, burst mode
and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import select
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..interfaces import Broker, Delivery, ManyWriter, MessageStream, StreamingReceiver
from ..util.chunks import chunks
from .acker import ACK_INTERVAL_S, Acker
from .aio import DRIVERS, AsyncPool
from .autoscale import INTERVAL_S, KEEPALIVE_S, Autoscaler
from .burst import DEFAULT_MAX_WAIT_S, Burst
from .consumer import Consumer
from .decoded import forget as forget_decoded
from .executor import Executor, Outcome
from .givebacks import GiveBacks
from .heartbeat import Heartbeat
from .inbox import Held, Inbox
from .lifecycle import Lifecycle
from .pools import ProcessRunner, Runner, ThreadRunner, pool_log_config, start_all
from .presence import Presence, Tracker, worker_presence
from .ratelimit import RateLimits
from .recycle import Recycle
from .result_batch import BatchedResults
from .revocations import KnownRevoked, RevokeCheck
from .revoke_watch import RevokeWatch

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("cloudq.worker")

POOLS = ("threads", "process", "async")
# Celery's pool names: prefork is the process pool; solo runs one task at a time (one pool thread)
POOL_ALIASES = {"prefork": "process", "solo": "threads"}
DEFAULT_KILL_GRACE_S = 2.0  # process pool: seconds past a task's time limit before its child is killed
DEFAULT_UNREACHABLE_TIMEOUT_S = 60.0  # burst mode: give up after receives failed this long
RECEIVE_SETTLE_S = 1.0  # shutdown waits this long past the poll wait for a receive in flight
ACK_LEASE_FRACTION = 0.1  # the heartbeat keeps at least a sixth of a lease; acks go out well before
STREAM_CLOSE_MAX_S = 10.0  # shutdown waits at most this long (and at most the grace) for the stream to close


class _Waker:
    """Self-pipe: lets signal handlers and other threads wake the main thread without locks
    (a signal handler that takes a lock the interrupted code holds would deadlock)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already pending, or closed at exit

    def wait(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        readable, _, _ = select.select([self._r], [], [], timeout)
        if readable:
            try:
                while os.read(self._r, 512):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def pool_concurrency(pool: str, concurrency: int | None, autoscale: tuple[int, int] | None) -> int | None:
    """The concurrency Celery's pool options imply: autoscale's max, 1 for solo; ConfigurationError
    (one line) for combinations that contradict each other."""
    if autoscale is not None:
        high, low = autoscale
        if pool not in ("threads", "process", "prefork"):
            raise ConfigurationError(f"autoscale is for the threads and process pools, not {pool}")
        if concurrency is not None and concurrency != high:
            raise ConfigurationError("give autoscale=(max, min) or concurrency, not both")
        if not 1 <= low <= high:
            raise ConfigurationError(f"autoscale takes (max, min) with 1 <= min <= max, got {autoscale}")
        return high
    if pool == "solo":
        if concurrency is not None and concurrency != 1:
            raise ConfigurationError(
                f"the solo pool runs one task at a time: drop concurrency={concurrency} or use the threads pool"
            )
        return 1
    return concurrency


def redact(url: str) -> str:
    """A backend URL for logs: no credentials, no query options."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Worker:
    """Runs an app's tasks from its queues until stopped (or, in burst mode, until they are empty)."""

    def __init__(
        self,
        app: App,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        prefetch_multiplier: int | None = None,
        burst: bool = False,
        grace: float = 30.0,
        app_path: str | None = None,
        lease_s: float | None = None,
        *,
        poll_wait_s: float | None = None,
        ack_interval_s: float = ACK_INTERVAL_S,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        unreachable_timeout_s: float = DEFAULT_UNREACHABLE_TIMEOUT_S,
        revoke_poll_s: float | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        autoscale: tuple[int, int] | None = None,
        autoscale_keepalive_s: float = KEEPALIVE_S,
        autoscale_interval_s: float = INTERVAL_S,
    ) -> None:
        """Burst mode: ``max_wait_s`` bounds how long an idle worker waits for delayed work (retries
        and ETAs due within it); ``unreachable_timeout_s`` how long it retries a failing broker
        before exiting 1. A long-running worker waits and retries for as long as it runs.
        ``pool`` takes Celery's ``prefork`` (= process) and ``solo`` (threads, concurrency 1);
        ``max_tasks_per_child``/``max_memory_per_child`` (KiB) replace process-pool children
        between tasks (default: the settings of the same names). ``autoscale=(max, min)``: the
        threads or process pool runs min to max slots (autoscale.py); ``concurrency`` is then max.
        ``revoke_poll_s`` (default: the ``revoke_poll`` setting) paces the revoke poll of held tasks."""
        s = app.settings
        self.app = app
        self.queues = list(queues) if queues else app.queues()
        chosen = pool or s.pool
        self.pool = POOL_ALIASES.get(chosen, chosen)
        concurrency = pool_concurrency(chosen, concurrency, autoscale)
        self.concurrency = concurrency or s.concurrency or os.cpu_count() or 1
        # slots running now: concurrency, or between autoscale's min and max
        self.live = autoscale[1] if autoscale else self.concurrency
        self.autoscale_interval_s = autoscale_interval_s
        self._scaler = Autoscaler(autoscale[0], autoscale[1], autoscale_keepalive_s) if autoscale else None
        self.recycle = Recycle(
            s.max_tasks_per_child if max_tasks_per_child is None else max_tasks_per_child,
            s.max_memory_per_child if max_memory_per_child is None else max_memory_per_child,
        )
        self.prefetch_multiplier = prefetch_multiplier or s.prefetch_multiplier
        self.burst = burst
        self.grace = grace
        self.app_path = app_path
        self.lease_s = lease_s or s.visibility_timeout
        self.poll_wait_s = poll_wait_s
        self.ack_interval_s = ack_interval_s
        self.kill_grace_s = kill_grace_s
        self.max_wait_s = max_wait_s
        self.unreachable_timeout_s = unreachable_timeout_s
        self.revoke_poll_s = s.revoke_poll if revoke_poll_s is None else revoke_poll_s
        if not self.queues:
            raise ConfigurationError("the worker has no queues to consume: pass queues or define a task")
        if self.pool not in POOLS:
            raise ConfigurationError(f"unknown pool {chosen!r}; choose one of {', '.join((*POOLS, *POOL_ALIASES))}")
        if self.recycle and self.pool != "process":
            raise ConfigurationError(
                f"max_tasks_per_child/max_memory_per_child replace pool processes: they need the process pool "
                f"(--pool process or prefork), not {chosen}"
            )
        if self.concurrency < 1 or self.prefetch_multiplier < 1:
            raise ConfigurationError("concurrency and prefetch_multiplier must be at least 1")
        if self.lease_s <= 0 or grace < 0:
            raise ConfigurationError("lease_s must be > 0 and grace >= 0 seconds")
        if max_wait_s < 0 or unreachable_timeout_s < 0:
            raise ConfigurationError("max_wait_s and unreachable_timeout_s must be >= 0 seconds")
        if self.pool == "process" and not app_path:
            raise ConfigurationError(
                "the process pool needs app_path ('module:app') so its processes can import the app"
            )
        self._stop_reason: str | None = None
        self._forced_signal: int | None = None
        self._waker: _Waker | None = None
        self._acker: Acker | None = None
        self._heartbeat: Heartbeat | None = None
        self.tracker = Tracker()  # what runs now, outcome counts: for the presence record
        self.presence: Presence | None = None
        self._inbox: Inbox | None = None
        self._burst: Burst | None = None
        self._batched: BatchedResults | None = None
        self._on_exit: list[Callable[[], None]] = []
        self._known_revoked = KnownRevoked()
        self._revoke_watch: RevokeWatch | None = None
        self._active: dict[int, tuple[Delivery, Runner]] = {}  # id(delivery) -> what runs it
        self._broker: Broker | None = None
        self._stream: MessageStream | None = None
        self.runners: list[Runner] = []  # one per pool slot, while running
        self._slots: list[threading.Thread] = []
        self._slots_left = 0  # slot threads not yet finished (counted before they wake the main thread)
        self._exit_lock = threading.Lock()
        self._crashed = False
        self.rate_limits = RateLimits(app)
        self._shared: ThreadRunner | None = None  # the threads pools' runner, shared by every slot
        self._aio: AsyncPool | None = None  # the async pool's drivers (aio.py)
        self.lifecycle = Lifecycle(self)  # the worker_* signals, sender: this worker

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful stop, from any thread: same as a first SIGTERM."""
        self._request_stop("stop requested")

    def _request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._waker is not None:
            self._waker.wake()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_reason is not None and self._waker is not None:
            self._forced_signal = signum  # second signal: stop now
        self._request_stop(f"received {signal.Signals(signum).name}")

    @property
    def counts(self) -> dict[str, int]:
        """Outcomes applied so far by kind (ack, nack, dead_letter, requeued)."""
        return dict(self._acker.counts) if self._acker else {}

    @property
    def holding(self) -> int:
        """Messages buffered or running now (at most prefetch_multiplier x concurrency)."""
        return len(self._inbox.held()) if self._inbox else 0

    @property
    def budget(self) -> int:
        """Messages the worker may hold now: prefetch x live slots (autoscale moves it)."""
        return self._inbox.capacity if self._inbox else 0

    @property
    def extended(self) -> int:
        """Leases extended by the heartbeat so far."""
        return self._heartbeat.extended if self._heartbeat else 0

    @property
    def revoke_polls(self) -> int:
        """Revoke polls of the held tasks' records made so far (one batched read each)."""
        return self._revoke_watch.polls if self._revoke_watch else 0

    # -- run --------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; the process exit code (0 after a graceful stop or a finished burst)."""
        broker = self._broker = self.app.broker
        limits = broker.limits
        lease = min(self.lease_s, limits.max_lease_s)
        # brokers cap the wait at their own limit; one without long polls makes the consumer pause
        poll_wait = self.poll_wait_s if self.poll_wait_s is not None else self.app.settings.poll_wait
        self.app.executor  # noqa: B018 - build it before the threads share it
        waker = self._waker
        if waker is None:
            # kept for the Worker's lifetime: closing it while another thread may still write to
            # it could write into whatever file reuses the descriptor
            waker = self._waker = _Waker()
            weakref.finalize(self, waker.close)
        # a finished message waits for its ack with no heartbeat: keep that well inside its lease
        batched = self._batched = self._batched_results()
        givebacks = GiveBacks() if self.burst else None
        acker = self._acker = Acker(
            broker,
            min(self.ack_interval_s, lease * ACK_LEASE_FRACTION),
            before_apply=batched.flush if batched else None,
            givebacks=givebacks,
            app=self.app,
        )
        burst = None
        if givebacks is not None:
            burst = self._burst = Burst(broker, self.queues, givebacks, self.max_wait_s, settle=acker.flush)
        check = RevokeCheck(self.app)
        known = self._known_revoked
        stream = self._stream = self._open_stream(broker, lease)
        consumer = Consumer(
            broker,
            self.queues,
            lease,
            poll_wait,
            burst=burst,
            unsettled=acker.unsettled,
            settle=acker.flush,
            screen=(lambda batch: known.add(check.revoked(batch))) if check.enabled else None,
            stream=stream,
        )
        give_up = self.unreachable_timeout_s if self.burst else None
        # one bucket per task for all slots, in this process (Celery: rate limits are per worker)
        gate = self.rate_limits.delay  # reads no body while no task has a rate limit
        inbox = self._inbox = Inbox(
            self.capacity(broker),
            consumer,
            self._release,
            give_up_after_s=give_up,
            gate=gate,
            # the async pool's threads do not wait on what they start: the count is kept here
            max_running=self.concurrency if self.pool == "async" else None,
        )
        heartbeat = self._heartbeat = Heartbeat(broker, lease, inbox.held)
        self.presence = worker_presence(self, inbox)
        watch = None
        if check.enabled and self.revoke_poll_s > 0:
            watch = self._revoke_watch = RevokeWatch(
                check, known, self.revoke_poll_s, inbox.held, lambda: list(self._active.values())
            )
        runners: list[Runner] = []
        previous = self._install_signals()
        try:
            self.lifecycle.init()  # before the pool starts (Celery's worker_init)
            runners = self.runners = self._runners()
            acker.start()
            heartbeat.start()
            if self.presence is not None:
                self.presence.start()
            if watch is not None:
                watch.start()
            self._slots = []
            self.lifecycle.ready()  # the pool is up; the slots receive from now on, so no task runs before it
            for runner in runners:
                self._start_slot(runner)
            log.info(
                "worker started: %s app=%s queues=%s pool=%s concurrency=%s prefetch=%d lease=%ss broker=%s%s",
                self.app.executor.hostname,
                self.app.name,
                ",".join(self.queues),
                self.pool,
                f"{self.concurrency} (autoscale from {self.live})" if self._scaler else self.concurrency,
                inbox.capacity,
                lease,
                redact(self.app.broker_url),
                f" burst (max_wait={self.max_wait_s:g}s)" if self.burst else "",
            )
            self._warn_unrouted()
            scaler = self._scaler
            while self._stop_reason is None and not inbox.stopping:
                waker.wait(self.autoscale_interval_s if scaler else None)
                if scaler is not None and self._stop_reason is None and not inbox.stopping:
                    self._rescale(scaler, broker)
            return self._shutdown(runners, poll_wait)
        finally:
            self._release(self._close_stream())  # run() failed before its shutdown: nothing stays held
            self._restore_signals(previous)
            for runner in list(runners):
                runner.close()
            self.lifecycle.shutdown()  # after the drain, pool children gone

    def capacity(self, broker: Broker, slots: int | None = None) -> int:
        """Messages held at most: prefetch x concurrency (``slots``, default the live ones), but
        never less than one full receive batch (``limits.min_receive_batch``), or every receive
        would come back partly empty and cost requests for nothing."""
        limits = broker.limits
        live = self.live if slots is None else slots
        return max(self.prefetch_multiplier * live, min(limits.max_batch, limits.min_receive_batch))

    def _open_stream(self, broker: Broker, lease: float) -> MessageStream | None:
        """A long-running worker receives over the broker's stream when it has one, holding at
        most what the inbox may hold (autoscale: at its max). Burst runs are one-shot: they ask
        per receive, so nothing stays held by a client once the queues are done."""
        if self.burst or not isinstance(broker, StreamingReceiver):
            return None
        return broker.stream(self.queues, self.capacity(broker, self.concurrency), lease, self._lease_bound(lease))

    def _lease_bound(self, lease: float) -> float | None:
        """How long the stream's client keeps one message leased: a task still running past its
        time limit, the kill grace and one more lease is hung. None when a task has no limit."""
        default = self.app.settings.time_limit
        limits = [task.time_limit or default for task in self.app.tasks.values()]
        known = [limit for limit in limits if limit is not None]
        if not known or len(known) < len(limits):
            return None
        return max(known) + self.kill_grace_s + lease

    def _close_stream(self) -> list[Delivery]:
        """Close the stream (if open) within the grace; what it held but never handed out."""
        stream, self._stream = self._stream, None
        if stream is None:
            return []
        try:
            return stream.close(max(1.0, min(self.grace, STREAM_CLOSE_MAX_S)))
        except Exception as exc:  # its messages return after their lease
            log.warning("closing the broker's stream failed: %s: %s", type(exc).__name__, exc)
            return []

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The async pool: one event loop in its own thread runs every slot's ``async def`` task,
        so up to ``concurrency`` coroutines run at once and can share clients; sync tasks still
        run in the slot threads."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="cloudq-asyncio", daemon=True)
        thread.start()

        def stop() -> None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

        self._on_exit.append(stop)
        return loop

    def _batched_results(self) -> BatchedResults | None:
        """Threads share one process: their result writes can share transactions when the store
        writes many at once (SQLite). Child processes write their own."""
        store = self.app.results
        if self.pool == "process" or not isinstance(store, ManyWriter):
            return None
        return BatchedResults(store)

    def _runners(self) -> list[Runner]:
        if self.pool == "async":
            loop = self._event_loop()
            executor = Executor(self.app, writer=self._batched, loop=loop)
            shared = self._shared = ThreadRunner(self.app, executor)
            assert self._inbox is not None and self._acker is not None
            aio = self._aio = AsyncPool(
                executor, loop, self._inbox, self._hand_on, self.tracker, self._revoked, shared, self._active
            )
            self._on_exit.append(aio.close)
            return [shared] * min(self.live, DRIVERS)  # the drivers; up to `concurrency` tasks run at once
        if self.pool != "process":
            batching = Executor(self.app, writer=self._batched) if self._batched else None
            shared = self._shared = ThreadRunner(self.app, batching)
            return [shared] * self.live
        children = [self._child() for _ in range(self.live)]
        start_all(children)
        return list(children)

    def _child(self) -> ProcessRunner:
        assert self.app_path is not None
        level, fmt = pool_log_config()
        return ProcessRunner(self.app, self.app_path, self.kill_grace_s, level, fmt, self.recycle)

    def _start_slot(self, runner: Runner) -> None:
        thread = threading.Thread(
            target=self._slot, args=(runner,), name=f"cloudq-slot-{len(self._slots)}", daemon=True
        )
        with self._exit_lock:
            self._slots_left += 1
            self._slots.append(thread)
        thread.start()

    def _rescale(self, scaler: Autoscaler, broker: Broker) -> None:
        """Autoscale: start slots up to the target, or ask the surplus to exit after their task;
        the buffer follows the live slot count."""
        inbox = self._inbox
        assert inbox is not None
        target = scaler.target(self.live, len(inbox.held()))
        if target == self.live:
            return
        retire = max(0, self.live - target)
        for _ in range(target - self.live):
            runner: Runner
            if self._shared is not None:
                runner = self._shared
            else:
                child = self._child()
                try:
                    child.launch()  # its first run waits until it has imported the app
                except OSError as exc:
                    log.warning("autoscale: could not start a pool process: %s: %s", type(exc).__name__, exc)
                    break
                runner = child
            with self._exit_lock:
                self.runners.append(runner)
            self._start_slot(runner)
            self.live += 1
        self.live -= retire
        inbox.resize(self.capacity(broker), retire)

    def _slot(self, runner: Runner) -> None:
        """One pool slot: take a message (receiving for everyone when the buffer is empty), run it,
        hand the outcome to the acker. Autoscale may retire it between tasks."""
        inbox = self._inbox
        assert inbox is not None
        held: Held | None = None
        retired = False
        try:
            if self._aio is not None:
                self._aio.drive()
                return
            while True:
                held = inbox.take(held)
                if held is None:
                    retired = inbox.retired()
                    return
                self._hand_on(held.delivery, self.tracker.run(functools.partial(self._run, runner), held.delivery))
        except BaseException:
            log.exception("pool slot crashed; stopping the worker")
            self._crashed = True
            self._request_stop("a pool slot crashed")
        finally:
            with self._exit_lock:
                self._slots_left -= 1
                if retired:
                    self.runners.remove(runner)
            if retired and runner is not self._shared:
                runner.close()  # its child process exits
            if self._waker is not None:
                self._waker.wake()

    def _hand_on(self, delivery: Delivery, outcome: Outcome) -> None:
        """A finished run's outcome to the acker (and out of the stream's flow control)."""
        forget_decoded(delivery)  # a process pool's child decoded its own copy: the revoke check's goes
        if self._stream is not None:
            self._stream.finished([delivery])  # its ack waits for the batch: no longer held
        assert self._acker is not None
        self._acker.put(delivery, outcome)

    def _revoked(self, delivery: Delivery) -> Outcome | None:
        """The outcome of a delivery whose task is known revoked (acked unrun), else None."""
        record = self._known_revoked.take(delivery)
        return None if record is None else self.app.executor.revoked(delivery, record)

    def _run(self, runner: Runner, delivery: Delivery) -> Outcome:
        """Run one delivery in ``runner``, unless its task is known revoked (then acked unrun)."""
        revoked = self._revoked(delivery)
        if revoked is not None:
            return revoked
        key = id(delivery)
        self._active[key] = (delivery, runner)
        try:
            return runner.run(delivery)
        finally:
            del self._active[key]

    def _warn_unrouted(self) -> None:
        """A queue no task routes to is usually a typo (``-Q nosuch``); it is still consumed,
        since ``apply_async(queue=...)`` can send anywhere."""
        routed = self.app.queues()
        unrouted = [queue for queue in self.queues if queue not in routed]
        if unrouted:
            log.warning(
                "no task of app %s routes to queue %s (its tasks route to: %s); consuming it anyway",
                self.app.name,
                ", ".join(repr(queue) for queue in unrouted),
                ", ".join(routed),
            )

    def _release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back messages never started, so another worker can take them at once."""
        broker = self._broker
        if not deliveries or broker is None:
            return
        for part in chunks(deliveries, max(1, broker.limits.max_batch)):
            try:
                broker.release(part)
            except Exception as exc:
                log.warning(
                    "releasing %d message(s) failed; they return after their lease: %s: %s",
                    len(part),
                    type(exc).__name__,
                    exc,
                )

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self, runners: list[Runner], poll_wait: float) -> int:
        inbox, acker, heartbeat, waker = self._inbox, self._acker, self._heartbeat, self._waker
        assert inbox is not None and acker is not None and heartbeat is not None and waker is not None
        began = time.monotonic()
        if inbox.failure is not None:
            log.info("worker stopping: burst given up, the broker is failing")
        elif inbox.drained:
            log.info("worker stopping: burst done, %s", self._burst.summary if self._burst else "the queues are empty")
        else:
            log.info("worker stopping (%s); running tasks get up to %ss", self._stop_reason, self.grace)
        reason = self._stop_reason or ""
        self.lifecycle.shutting_down(reason.removeprefix("received ") if reason.startswith("received SIG") else None)
        unstarted = inbox.stop()
        unstarted += self._close_stream()  # what the stream held for the inbox, and it holds no more
        if unstarted:
            self._release(unstarted)
            log.info("released %d prefetched message(s) for other workers", len(unstarted))
        grace_end = began + self.grace
        receive_end = began + poll_wait + RECEIVE_SETTLE_S
        while self._forced_signal is None and self._slots_left > 0:
            now = time.monotonic()
            # a slot still inside a receive is waited for (bounded by the poll wait) so that what
            # it receives is released rather than left leased
            end = max(grace_end, receive_end) if inbox.receiving() else grace_end
            if now >= end:
                break
            waker.wait(end - now)
        self._abandon(runners)
        if self._revoke_watch is not None:
            self._revoke_watch.stop()
        heartbeat.stop()
        if self.presence is not None:
            self.presence.stop()
        acker.close()  # flushes the batched results first
        if self._batched is not None:
            self._batched.close()
        for hook in self._on_exit:
            hook()
        counts = acker.counts
        log.info(
            "worker stopped: %d acked, %d retried, %d dead-lettered, %d requeued",
            counts["ack"] - counts["requeued"],
            counts["nack"],
            counts["dead_letter"],
            counts["requeued"],
        )
        if self._forced_signal is not None:
            return 128 + self._forced_signal
        return 1 if self._crashed or inbox.failure is not None else 0

    def _abandon(self, runners: list[Runner]) -> None:
        """Past the grace period (or on a second signal): stop what can be stopped."""
        if not (self._inbox and self._inbox.running()):
            return
        stopped = sum(1 for runner in set(runners) if runner.abandon())
        if stopped:
            # killed children: their slots hand the messages back for an immediate redelivery
            end = time.monotonic() + 5.0
            for thread in self._slots:
                thread.join(max(0.0, end - time.monotonic()))
        left = len(self._inbox.running()) if self._inbox else 0
        if left:
            log.warning(
                "%d task(s) still running after the grace period; their messages return after their lease", left
            )

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
