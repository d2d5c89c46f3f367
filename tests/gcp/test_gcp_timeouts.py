"""Producer deadlines on Google Cloud (issue 10, defect 5): through a stalled network ``.delay()``
(the queue's setup on first use included) and result reads raise BackendUnavailable within
``send_timeout``, naming the emulator, and work again once the network is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cloudq_gcp.options import SEND_TIMEOUT_S, FirestoreOptions, PubSubOptions
from cloudq_gcp.testing import Emulator

from cloudq import App
from cloudq.config import Settings
from cloudq.errors import BackendUnavailable, ConfigurationError
from cloudq.testing.netfault import FaultProxy

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(90)]

DEADLINE_S = 2.0
SLACK_S = 1.5  # scheduling on a shared CI machine


@contextmanager
def proxied(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FaultProxy, str]]:
    """A FaultProxy in front of ``emulator``, its variable pointing the clients at the proxy."""
    host, _, port = emulator.env_value.rpartition(":")
    with FaultProxy(host, int(port)) as proxy:
        address = f"127.0.0.1:{proxy.port}"
        monkeypatch.setenv(emulator.env_var, address)
        yield proxy, address


def raises_in_time(call: Callable[[], Any]) -> BackendUnavailable:
    """What ``call`` raises, checked to be BackendUnavailable within the deadline (pytest's
    timeout bounds a call that would hang)."""
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        call()
    took = time.monotonic() - started
    assert took <= DEADLINE_S + SLACK_S, f"took {took:.1f}s for a {DEADLINE_S}s deadline: {raised.value}"
    return raised.value


def test_delay_and_result_reads_fail_within_send_timeout_in_a_partition(
    pubsub_emulator: Emulator, firestore_emulator: Emulator, project: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        proxied(pubsub_emulator, monkeypatch) as (pubsub, pubsub_at),
        proxied(firestore_emulator, monkeypatch) as (
            firestore,
            firestore_at,
        ),
    ):
        warm = App(  # a cold emulator's first answers can take longer than the short deadline
            "timeouts",
            broker=f"pubsub://{project}?prefix=t{unique}-&send_timeout=60",
            results=f"firestore://results-{unique}?project={project}&send_timeout=60",
        )
        assert warm.task(name="warm")(lambda: None).delay().status == "PENDING"
        warm.close()
        app = App(
            "timeouts",
            broker=f"pubsub://{project}?prefix=t{unique}-&send_timeout={DEADLINE_S}",
            results=f"firestore://results-{unique}?project={project}&send_timeout={DEADLINE_S}",
        )

        @app.task()
        def noop() -> None:
            return None

        @app.task(queue="later")
        def first_use() -> None:  # its queue is prepared only on its first send
            return None

        sent = noop.delay()  # the queue prepared while the network works
        assert sent.status == "PENDING"
        pubsub.stall()
        firestore.stall()
        for call in (noop.delay, lambda: noop.send_each([(), ()]), first_use.delay):
            assert pubsub_at in str(raises_in_time(call))
        for call in (lambda: sent.status, lambda: sent.get(timeout=30)):
            assert firestore_at in str(raises_in_time(call))
        pubsub.restore()
        firestore.restore()
        assert first_use.delay().status == "PENDING"  # and works again at once
        assert noop.delay().status == "PENDING"
        app.close()


def test_send_timeout_is_a_strict_option_on_both_services(project: str) -> None:
    settings = Settings()
    assert PubSubOptions.from_url(f"pubsub://{project}", settings).send_timeout == SEND_TIMEOUT_S == 10.0
    assert FirestoreOptions.from_url(f"firestore://r?project={project}&send_timeout=300", settings).send_timeout == 300
    for url in (f"pubsub://{project}?send_timeout=0.5", f"firestore://r?project={project}&send_timeout=301"):
        kind = PubSubOptions if url.startswith("pubsub") else FirestoreOptions
        with pytest.raises(ConfigurationError, match="send_timeout"):
            kind.from_url(url, settings)
