"""How a pool slot runs one delivery: in its own thread, or in a child process it owns.

Either way the answer is the executor's Outcome. Nothing a task or the executor does reaches
the worker as an exception: a failure to run at all gives the message back after a backoff.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigurationError
from ..interfaces import Delivery, ResultRecord
from .child import FATAL, READY, ChildError, child_main, decode_outcome, describe, encode_delivery, unframe
from .consumer import peek
from .executor import Executor, Outcome, RetryIn, give_back
from .recycle import Recycle

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("cloudq.worker")

CHILD_START_TIMEOUT_S = 120.0
CHILD_EXIT_TIMEOUT_S = 5.0


class Runner(Protocol):
    can_terminate: bool  # revoke(terminate=True) can stop a task it runs

    def run(self, delivery: Delivery) -> Outcome: ...

    def terminate(self, delivery: Delivery, signum: int, record: ResultRecord) -> None:
        """Kill ``delivery``'s task if it is still running here; its run then answers revoked."""

    def abandon(self) -> bool:
        """Stop the running task now if that is possible; True when one was stopped."""

    def close(self) -> None: ...


class ThreadRunner:
    """Runs the task in the calling pool thread (soft time limits come from the executor)."""

    can_terminate = False  # a thread cannot be killed

    def __init__(self, app: App, executor: Executor | None = None) -> None:
        self.executor = executor or app.executor

    def run(self, delivery: Delivery) -> Outcome:
        try:
            return self.executor.execute(delivery)
        except BaseException as exc:  # a task calling sys.exit must not stop the worker
            return give_back(delivery, describe(exc))

    def terminate(self, delivery: Delivery, signum: int, record: ResultRecord) -> None:
        pass

    def abandon(self) -> bool:
        return False  # a thread cannot be stopped: its message comes back after its lease

    def close(self) -> None:
        pass


class ProcessRunner:
    """Owns one child process and runs deliveries in it, enforcing the hard time limit.

    A child that dies or overruns ``time_limit + kill_grace_s`` is replaced; the delivery's fate
    is decided by ``executor.lost`` in this (parent) process. ``recycle`` replaces a child between
    tasks (max tasks / memory per child): the new one starts at once and is awaited by the next run.
    ``terminate`` (a revoke) kills the child with the revoke's signal, then SIGKILL after
    ``kill_grace_s`` (children ignore SIGTERM and SIGINT, so a signal to the process group cannot
    kill tasks the worker lets finish).
    """

    can_terminate = True

    def __init__(
        self,
        app: App,
        app_path: str,
        kill_grace_s: float,
        log_level: int,
        log_format: str | None,
        recycle: Recycle | None = None,
    ) -> None:
        self.app = app
        self.app_path = app_path
        self.kill_grace_s = kill_grace_s
        self._log_args = (log_level, log_format)
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: SpawnProcess | None = None
        self._conn: Connection | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._current: Delivery | None = None  # the delivery running in the child
        self._terminated: tuple[Delivery, int, ResultRecord] | None = None
        self._recycle = recycle or Recycle()
        self._served = 0  # tasks the current child has run
        self._starting = False  # launched, its READY frame not read yet
        self._limits = {name: task.time_limit for name, task in app.tasks.items() if task.time_limit}

    @property
    def process(self) -> SpawnProcess | None:
        return self._proc

    def start(self) -> None:
        """Start the child and wait until it has imported the app; ConfigurationError if it cannot."""
        self.launch()
        self.await_ready()

    def launch(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=child_main, args=(self.app_path, child, *self._log_args), name="cloudq-pool", daemon=False
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self._served, self._starting = 0, True

    def await_ready(self) -> None:
        conn = self._conn
        assert conn is not None
        self._starting = False
        try:
            if not conn.poll(CHILD_START_TIMEOUT_S):
                self._reap(kill=True)
                raise ConfigurationError(
                    f"pool process did not import {self.app_path!r} within {CHILD_START_TIMEOUT_S}s"
                )
            header, _ = unframe(conn.recv_bytes())
        except (EOFError, OSError):
            code = self._reap()
            raise ConfigurationError(
                f"pool process exited with code {code} while importing {self.app_path!r}"
            ) from None
        if header.get("kind") != READY:
            self._reap()
            raise ConfigurationError(str(header.get("error") if header.get("kind") == FATAL else header))

    def run(self, delivery: Delivery) -> Outcome:
        with self._lock:
            self._current, self._terminated = delivery, None
        try:
            return self._run(delivery)
        finally:
            with self._lock:
                self._current = None

    def terminate(self, delivery: Delivery, signum: int, record: ResultRecord) -> None:
        with self._lock:
            proc = self._proc
            if self._current is not delivery or proc is None or proc.pid is None:
                return  # finished meanwhile
            self._terminated = (delivery, signum, record)
            try:
                os.kill(proc.pid, signum)
            except (ProcessLookupError, ValueError):
                return
        log.warning("revoked task running message %s: sent %s to its pool process", delivery.message_id, signum)
        if signum != signal.SIGKILL:
            timer = threading.Timer(self.kill_grace_s, self._kill, args=(proc,))
            timer.daemon = True
            timer.start()

    def _kill(self, proc: SpawnProcess) -> None:
        with self._lock:
            if self._proc is proc:
                try:
                    proc.kill()
                except (ValueError, OSError):
                    pass  # gone meanwhile

    def _run(self, delivery: Delivery) -> Outcome:
        try:
            conn = self._send(encode_delivery(delivery))
        except (ConfigurationError, OSError) as exc:
            return give_back(delivery, f"cannot hand the task to a pool process: {describe(exc)}")
        limit = self._limit(delivery)
        try:
            ready = conn.poll(None if limit is None else limit + self.kill_grace_s)
            data = conn.recv_bytes() if ready else None
        except (EOFError, OSError):
            return self._died(delivery)
        if data is None:
            return self._timed_out(delivery, limit or 0.0)
        with self._lock:
            self._current = None  # answered: a revoke from now on must not kill the next child
        self._served += 1
        if self._recycle:
            self._replace_if_due()
        try:
            return decode_outcome(data)
        except ChildError as exc:
            return self.app.executor.internal_error(delivery, exc)
        except (ValueError, KeyError, TypeError) as exc:
            return self.app.executor.internal_error(
                delivery, ValueError(f"unreadable answer from the pool process: {describe(exc)}")
            )

    def _replace_if_due(self) -> None:
        """Between tasks: replace the child when it has run its share or grown too large."""
        proc = self._proc
        reason = self._recycle.reason(self._served, proc.pid if proc is not None else None)
        if reason is None:
            return
        pid = proc.pid if proc is not None else None
        self._reap()
        log.info("replacing pool process %s: %s", pid, reason)
        try:
            self.launch()
        except OSError as exc:  # the next run starts one (or gives its message back)
            log.warning("could not start a new pool process now: %s", describe(exc))

    def _send(self, data: bytes) -> Connection:
        """Hand a delivery to the child, first replacing one that died while idle (the delivery
        never started there, so it costs no attempt)."""
        if self._conn is not None and self._starting:
            self.await_ready()
        if self._conn is not None:
            try:
                self._conn.send_bytes(data)
                return self._conn
            except OSError:
                code = self._reap()
                log.warning("pool process exited with code %s while idle; starting a new one", code)
        self.start()
        assert self._conn is not None
        self._conn.send_bytes(data)
        return self._conn

    def _limit(self, delivery: Delivery) -> float | None:
        if not self._limits:
            return None
        return self._limits.get(peek(delivery.body)[1])

    def _died(self, delivery: Delivery) -> Outcome:
        code = self._reap()
        terminated = self._terminated
        if terminated is not None and terminated[0] is delivery:  # revoke(terminate=True)
            log.warning("pool process running revoked message %s exited with code %s", delivery.message_id, code)
            return self.app.executor.revoked(delivery, terminated[2], terminated=True, signum=terminated[1])
        if self._abandoned:
            return RetryIn(0.0)  # stopped at shutdown: another worker may take it at once
        log.warning("worker process died with exit code %s while running message %s", code, delivery.message_id)
        return self._lost(delivery, f"worker process died with exit code {code}", timed_out=False)

    def _timed_out(self, delivery: Delivery, limit: float) -> Outcome:
        self._reap(kill=True)
        log.warning("killed worker process running message %s: time limit of %ss exceeded", delivery.message_id, limit)
        reason = f"task exceeded its time limit of {limit}s: worker process killed"
        return self._lost(delivery, reason, timed_out=True)

    def _lost(self, delivery: Delivery, reason: str, timed_out: bool) -> Outcome:
        try:
            return self.app.executor.lost(delivery, reason, timed_out=timed_out)
        except Exception as exc:
            return self.app.executor.internal_error(delivery, exc)

    def _reap(self, kill: bool = False) -> int | None:
        """Forget the child (a new one starts on the next run); return its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if kill:
            proc.kill()
        proc.join(CHILD_EXIT_TIMEOUT_S)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        code = proc.exitcode
        proc.close()
        return code

    def abandon(self) -> bool:
        """Kill the child mid-task (shutdown after the grace period); its slot thread then returns."""
        proc = self._proc
        if proc is None:
            return False
        self._abandoned = True
        try:
            proc.kill()
        except ValueError:
            return False  # already closed
        return True

    def close(self) -> None:
        """Closing the pipe tells an idle child to exit; one that does not is killed."""
        self._reap()


# the worker's log line format: `cloudq worker` configures logging with it, and pool children use it
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def pool_log_config() -> tuple[int, str | None]:
    """The parent's log level and the worker's format, so children's task lines look the same."""
    return logging.getLogger("cloudq").getEffectiveLevel(), LOG_FORMAT


def start_all(runners: list[ProcessRunner]) -> None:
    """Start every child at once (their imports run in parallel), then wait for all of them."""
    started = time.monotonic()
    for runner in runners:
        runner.launch()
    errors = []
    for runner in runners:
        try:
            runner.await_ready()
        except ConfigurationError as exc:
            errors.append(str(exc))
    if errors:
        for runner in runners:
            runner.close()
        raise ConfigurationError(errors[0])
    log.info("started %d pool processes in %.2fs", len(runners), time.monotonic() - started)
