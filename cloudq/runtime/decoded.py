"""Each delivery's body is parsed once: the revoke check decodes a batch before it runs (it needs
the task ids) and holds the envelopes; the executor takes the one of the delivery it runs.

Held by delivery identity (a Delivery is frozen and hashes its attributes dict, so not by value),
with the delivery itself so its id cannot be reused, and at most ``LIMIT`` of them: a delivery run
elsewhere (a process pool's child decodes its own copy) is forgotten when the worker hands its
outcome on, one never run (released at shutdown) when newer ones push it out; one not held is
decoded again, never dropped. Thread-safe: the worker checks at receive and runs in its pool's
threads.
"""

from __future__ import annotations

import threading

from ..envelope_schema import Envelope, decode
from ..interfaces import Delivery

LIMIT = 1024

_lock = threading.Lock()
_held: dict[int, tuple[Delivery, bytes | None, Envelope]] = {}


def envelope(delivery: Delivery, key: bytes | None) -> Envelope:
    """The delivery's envelope (MalformedMessage if it has none), held for ``take``."""
    entry = _held.get(id(delivery))
    if entry is not None and entry[0] is delivery and entry[1] == key:
        return entry[2]
    env = decode(delivery.body, key)
    with _lock:
        _held[id(delivery)] = (delivery, key, env)
        while len(_held) > LIMIT:
            del _held[next(iter(_held))]
    return env


def held(delivery: Delivery) -> Envelope | None:
    """The envelope ``envelope`` decoded for this delivery, if still held (for its task id)."""
    entry = _held.get(id(delivery)) if _held else None
    return entry[2] if entry is not None and entry[0] is delivery else None


def take(delivery: Delivery, key: bytes | None) -> Envelope:
    """The delivery's envelope, forgotten here: the held one, else decoded now. Each run takes
    its own (a held one is given out once), as if the body had just been decoded."""
    if _held:
        with _lock:
            entry = _held.pop(id(delivery), None)
        if entry is not None and entry[0] is delivery and entry[1] == key:
            return entry[2]
    return decode(delivery.body, key)


def forget(delivery: Delivery) -> None:
    """Drop what is held for a delivery run elsewhere (a process pool's child decodes its own)."""
    if _held:
        with _lock:
            _held.pop(id(delivery), None)
