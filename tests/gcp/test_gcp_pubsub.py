"""PubSubBroker on Google's Pub/Sub emulator: behaviour specific to Pub/Sub (the shared broker
contract runs in test_gcp_contract.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cloudq_gcp.options import PubSubOptions
from cloudq_gcp.pubsub import PUBSUB_MAX_BODY_BYTES, PubSubBroker

from cloudq.config import load_settings
from cloudq.errors import BackendUnavailable, ConfigurationError, MessageTooLarge, QueueNotFound
from cloudq.interfaces import Delivery, OutgoingMessage
from cloudq.registry import open_broker

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60)]


def make_broker(project: str, unique: str, **overrides: object) -> PubSubBroker:
    options = {
        "project": project,
        "prefix": f"t{unique}-",
        "ack_deadline": 10,
        "max_delivery_attempts": 5,
        "timeout": 10.0,
        "ordered": ("ordered",),
    }
    options.update(overrides)
    return PubSubBroker(PubSubOptions(**options))  # type: ignore[arg-type]


@pytest.fixture
def broker(pubsub_emulator, project: str, unique: str) -> Iterator[PubSubBroker]:
    broker = make_broker(project, unique)
    yield broker
    broker.close()


def receive_all(broker: PubSubBroker, queue: str, n: int, lease_s: float = 30, wait_s: float = 10) -> list[Delivery]:
    """Receive until ``n`` deliveries arrived or ``wait_s`` passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + wait_s
    while len(got) < n and time.monotonic() < deadline:
        got += broker.receive(queue, n - len(got), lease_s, wait_s=min(2.0, deadline - time.monotonic()))
    return got


def test_round_trip_keeps_body_and_adds_attributes(broker: PubSubBroker) -> None:
    [message_id] = broker.send("jobs", [OutgoingMessage(b'{"v":1}', attributes={"task": "app.add"})])
    [delivery] = receive_all(broker, "jobs", 1)
    assert delivery.body == b'{"v":1}'
    assert delivery.delivery_count == 1
    assert delivery.message_id == message_id
    assert dict(delivery.attributes) == {"task": "app.add"}  # the broker's own attributes stay inside
    raw = dict(delivery.receipt.internal)
    assert raw["cloudq-content-type"].startswith("application/vnd.cloudq")
    assert raw["cloudq-envelope-version"] == "1"
    broker.ack([delivery])
    assert broker.receive("jobs", 10, 5, wait_s=0) == []


def test_send_many_publishes_every_message_once(broker: PubSubBroker) -> None:
    ids = broker.send("jobs", [OutgoingMessage(str(i).encode()) for i in range(300)])
    assert len(set(ids)) == 300
    got = receive_all(broker, "jobs", 300)
    assert sorted(int(d.body) for d in got) == list(range(300))
    broker.ack(got)


def test_ordering_key_order_preserved_across_sends(broker: PubSubBroker) -> None:
    for start in range(0, 30, 10):  # three separate sends, two keys interleaved
        broker.send(
            "ordered",
            [
                OutgoingMessage(f"{k}:{i}".encode(), ordering_key=k)
                for i in range(start, start + 10)
                for k in ("a", "b")
            ],
        )
    got = receive_all(broker, "ordered", 60)
    for key in ("a", "b"):
        seen = [int(d.body.split(b":")[1]) for d in got if d.ordering_key == key]
        assert seen == list(range(30))
    broker.ack(got)


def test_nack_redelivers_and_counts(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"x")])
    [first] = receive_all(broker, "jobs", 1)
    broker.nack([first], 0)
    [second] = receive_all(broker, "jobs", 1)
    assert second.body == b"x" and second.delivery_count == 2
    broker.ack([second])


def test_unacked_lease_expires_and_counts(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"x")])
    [first] = receive_all(broker, "jobs", 1, lease_s=1)
    [again] = receive_all(broker, "jobs", 1)
    assert again.delivery_count == first.delivery_count + 1
    broker.ack([again])


def test_extend_keeps_the_message_leased(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"x")])
    [delivery] = receive_all(broker, "jobs", 1, lease_s=1)
    broker.extend([delivery], 20)
    time.sleep(1.5)  # past the first lease
    assert broker.receive("jobs", 1, 5, wait_s=1) == []
    broker.ack([delivery])


def test_release_does_not_count_a_delivery(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"x", attributes={"task": "t"})])
    [delivery] = receive_all(broker, "jobs", 1)
    broker.release([delivery])
    [again] = receive_all(broker, "jobs", 1)
    assert again.body == b"x" and again.delivery_count == 1
    assert again.message_id == delivery.message_id  # same message, a fresh copy
    assert again.attributes["task"] == "t"
    broker.ack([again])


def test_dead_letter_policy_takes_a_message_after_max_attempts(broker: PubSubBroker) -> None:
    broker.send("poison", [OutgoingMessage(b"boom")])
    counts = []
    for _ in range(5):  # max_delivery_attempts=5
        [delivery] = receive_all(broker, "poison", 1)
        counts.append(delivery.delivery_count)
        broker.nack([delivery], 0)
    assert counts == [1, 2, 3, 4, 5]
    assert broker.receive("poison", 1, 5, wait_s=1) == []
    deadline = time.monotonic() + 10
    while not (letters := broker.dead_letters("poison")) and time.monotonic() < deadline:
        time.sleep(0.2)
    [letter] = letters
    assert letter.body == b"boom"
    assert letter.reason.startswith("MaxDeliveryAttempts: delivered 5 times")


def test_explicit_dead_letter_keeps_reason_and_stays_listed(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"bad")])
    [delivery] = receive_all(broker, "jobs", 1)
    broker.dead_letter([delivery], "MalformedMessage: body is not JSON")
    assert broker.receive("jobs", 1, 5, wait_s=0.5) == []
    for _ in range(2):  # reading them gives them back
        [letter] = broker.dead_letters("jobs")
        assert (letter.body, letter.reason, letter.queue) == (b"bad", "MalformedMessage: body is not JSON", "jobs")
        assert letter.message_id == delivery.message_id
    assert broker.stats("jobs").dead_lettered == 1


def test_delayed_message_is_hidden_until_due_without_spending_attempts(broker: PubSubBroker) -> None:
    sent_at = time.time()
    broker.send("later", [OutgoingMessage(b"x", delay_s=3)])
    assert broker.receive("later", 1, 5, wait_s=1) == []  # pulled early, hidden
    assert broker.stats("later").delayed == 1
    [delivery] = receive_all(broker, "later", 1, wait_s=15)
    assert time.time() >= sent_at + 3  # never early
    assert delivery.body == b"x"
    assert delivery.delivery_count == 1  # the hop did not count
    assert "cloudq-not-before" not in delivery.attributes
    broker.ack([delivery])
    assert broker.receive("later", 1, 5, wait_s=1) == []


def test_nack_beyond_one_ack_deadline_becomes_a_delayed_copy(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"x")])
    [delivery] = receive_all(broker, "jobs", 1)
    broker.nack([delivery], 3600)
    assert broker.receive("jobs", 1, 5, wait_s=1) == []
    assert broker.stats("jobs").delayed == 1


def test_oversize_without_bucket_fails_before_publishing(broker: PubSubBroker) -> None:
    big = b"x" * (PUBSUB_MAX_BODY_BYTES + 1)
    with pytest.raises(MessageTooLarge, match=r"\?bucket="):
        broker.send("jobs", [OutgoingMessage(b"small"), OutgoingMessage(big)])
    assert broker.receive("jobs", 10, 5, wait_s=0.5) == []  # the small one was not sent either


def test_purge_drops_waiting_messages(broker: PubSubBroker) -> None:
    broker.send("jobs", [OutgoingMessage(b"%d" % i) for i in range(5)])
    deadline = time.monotonic() + 10
    purged = 0
    while purged < 5 and time.monotonic() < deadline:
        purged += broker.purge("jobs")
    assert purged == 5
    assert broker.receive("jobs", 10, 5, wait_s=0.5) == []


def test_ordering_key_needs_an_ordered_queue(broker: PubSubBroker) -> None:
    with pytest.raises(ConfigurationError, match=r"not ordered: add it to .*\?ordered="):
        broker.send("jobs", [OutgoingMessage(b"x", ordering_key="k")])


def test_missing_queue_without_create_missing(pubsub_emulator, project: str, unique: str) -> None:
    broker = make_broker(project, unique, create_missing=False)
    with pytest.raises(QueueNotFound, match="cloudq deploy"):
        broker.send("nowhere", [OutgoingMessage(b"x")])
    broker.close()


def test_existing_subscription_without_dead_letter_policy_is_refused(
    pubsub_emulator, project: str, unique: str
) -> None:
    plain = make_broker(project, unique, max_delivery_attempts=0)
    plain.send("jobs", [OutgoingMessage(b"x")])  # creates the subscription without a policy
    assert plain.limits.counts_deliveries is False
    [delivery] = receive_all(plain, "jobs", 1)
    assert delivery.delivery_count == 1
    plain.ack([delivery])
    counting = make_broker(project, unique)
    with pytest.raises(ConfigurationError, match="no dead-letter policy"):
        counting.receive("jobs", 1, 5)
    plain.close()
    counting.close()


def test_invalid_queue_name_is_a_clear_error(broker: PubSubBroker) -> None:
    with pytest.raises(ConfigurationError, match="not a valid Pub/Sub name"):
        broker.send("bad/name", [OutgoingMessage(b"x")])


def test_unreachable_emulator_is_backend_unavailable(
    monkeypatch: pytest.MonkeyPatch, project: str, unique: str
) -> None:
    from cloudq_gcp.testing import free_port

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    broker = make_broker(project, unique, timeout=1.0)
    with pytest.raises(BackendUnavailable, match="PUBSUB_EMULATOR_HOST"):
        broker.send("jobs", [OutgoingMessage(b"x")])
    broker.close()


def test_from_url_reads_options_and_project(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings({"broker_options": {"ack_deadline": 30}}, environ={})
    broker = open_broker("pubsub://proj-1?prefix=app-&max_delivery_attempts=0&bucket=b1", settings)
    assert isinstance(broker, PubSubBroker)
    assert broker.options.project == "proj-1"
    assert (broker.options.prefix, broker.options.ack_deadline, broker.options.bucket) == ("app-", 30, "b1")
    assert broker.limits.counts_deliveries is False
    assert broker.limits.max_body_bytes > PUBSUB_MAX_BODY_BYTES  # offload raises the limit
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert PubSubBroker.from_url("pubsub://", settings).options.project == "from-env"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pubsub://p?max_delivery_attempts=3", "5-100"),
        ("pubsub://p?ack_deadline=5", "10-600"),
        ("pubsub://p?create_missing=maybe", "true or false"),
        ("pubsub://p?timeout=x", "must be a number"),
    ],
)
def test_bad_options_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PubSubBroker.from_url(url, load_settings(environ={}))


def test_missing_project_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigurationError, match="needs a Google Cloud project"):
        PubSubBroker.from_url("pubsub://", load_settings(environ={}))
