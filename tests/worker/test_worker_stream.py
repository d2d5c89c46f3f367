"""The worker receives over a broker's stream (``StreamingReceiver``) outside burst mode, tells it
which messages finished, and releases what the stream still held when it stops; burst runs and
brokers without a stream keep ``Broker.receive``."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from worker_helpers import Running, run_burst, wait_for

from cloudq import App
from cloudq.backends.memory import MemoryBroker
from cloudq.interfaces import Delivery, MessageStream, StreamingReceiver
from cloudq.runtime.worker import Worker


class BufferStream:
    """Leases up to ``max_held`` messages ahead from the memory broker, as a client buffer would."""

    def __init__(self, broker: MemoryBroker, queues: Sequence[str], max_held: int, lease_s: float) -> None:
        self.broker, self.queues, self.max_held, self.lease_s = broker, list(queues), max_held, lease_s
        self.buffer: list[Delivery] = []
        self.out: set[int] = set()  # handed out, not finished
        self.finished_count = 0
        self.closed_with: list[Delivery] | None = None
        self.lock = threading.Lock()

    def _fill(self) -> None:
        room = self.max_held - len(self.buffer) - len(self.out)
        for queue in self.queues:
            if room > 0:
                got = self.broker.receive(queue, room, self.lease_s)
                self.buffer += got
                room -= len(got)

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        with self.lock:
            self._fill()
            mine = [d for d in self.buffer if d.queue == queue][: min(max_messages, 3)]  # a few at a time
            self.buffer = [d for d in self.buffer if all(d is not m for m in mine)]
            self.out.update(id(d) for d in mine)
            assert len(self.buffer) + len(self.out) <= self.max_held
        if not mine and wait_s:
            threading.Event().wait(min(wait_s, 0.01))
        return mine

    def finished(self, deliveries: Sequence[Delivery]) -> None:
        with self.lock:
            self.finished_count += len(deliveries)
            self.out.difference_update(id(d) for d in deliveries)

    def close(self, timeout_s: float) -> list[Delivery]:
        with self.lock:
            left, self.buffer = self.buffer, []
            self.closed_with = left
        return left


class StreamingMemory(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.streams: list[BufferStream] = []

    def stream(
        self, queues: Sequence[str], max_held: int, lease_s: float, max_lease_s: float | None = None
    ) -> MessageStream | None:
        self.streams.append(BufferStream(self, queues, max_held, lease_s))
        return self.streams[-1]


def make_app() -> tuple[App, StreamingMemory, threading.Event, list[int]]:
    app = App("stream", broker="memory://", results="memory://")
    broker = StreamingMemory()
    app._broker = broker  # the streaming broker instead of the URL's (App has no setter)
    gate = threading.Event()
    ran: list[int] = []

    @app.task(name="hold")
    def hold(i: int) -> int:
        ran.append(i)
        gate.wait(10)
        return i

    return app, broker, gate, ran


def test_a_long_running_worker_receives_over_the_stream_and_reports_finished_tasks() -> None:
    app, broker, gate, ran = make_app()
    assert isinstance(broker, StreamingReceiver)
    gate.set()
    handles = [app.tasks["hold"].delay(i) for i in range(25)]
    with Running(Worker(app, concurrency=2, poll_wait_s=0.05)) as running:
        wait_for(lambda: len(ran) == 25)
        wait_for(lambda: running.worker.counts.get("ack", 0) == 25)
    assert [h.get(timeout=5) for h in handles] == list(range(25))
    (stream,) = broker.streams
    assert stream.max_held == 10  # prefetch x concurrency, at least one receive batch
    assert stream.finished_count == 25


def test_a_stopped_worker_releases_what_its_stream_held() -> None:
    app, broker, gate, ran = make_app()
    for i in range(30):
        app.tasks["hold"].delay(i)
    running = Running(Worker(app, concurrency=1, prefetch_multiplier=1, poll_wait_s=0.05, grace=5))
    running.thread.start()
    wait_for(lambda: len(ran) == 1 and broker.streams)
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    wait_for(lambda: broker.streams[0].closed_with is not None)
    gate.set()
    stopper.join(10)
    left = broker.receive("default", 100, 30)
    assert len(left) == 29  # the inbox's and the stream's went back at once: all but the one that ran


def test_burst_runs_keep_synchronous_receives() -> None:
    app, broker, gate, ran = make_app()
    gate.set()
    app.tasks["hold"].delay(1)
    assert run_burst(Worker(app, burst=True, concurrency=1, poll_wait_s=0.05)) == 0
    assert ran == [1] and broker.streams == []
