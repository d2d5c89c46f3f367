"""SQSBroker behaviour specific to SQS, against a moto server process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from cloudq_aws.errors import FifoDelayUnsupported
from cloudq_aws.sqs import SQSBroker
from cloudq_aws.testing import MotoServer

from cloudq.config import Settings
from cloudq.errors import BackendUnavailable, ConfigurationError, CredentialsMissing, MessageTooLarge, QueueNotFound
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


def make_broker(prefix: str, query: str = "", **settings: object) -> SQSBroker:
    return SQSBroker.from_url(f"sqs://?prefix={prefix}{query}", Settings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def broker(prefix: str) -> Iterator[SQSBroker]:
    b = make_broker(prefix)
    yield b
    b.close()


def receive_all(broker: SQSBroker, queue: str, expected: int, lease_s: float = 30) -> list:
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        got.extend(broker.receive(queue, expected - len(got), lease_s, wait_s=1))
    return got


def test_round_trip_keeps_body_attributes_and_counts_deliveries(broker: SQSBroker) -> None:
    broker.send("work", [OutgoingMessage(b'{"x": 1}', attributes={"task": "t.add", "empty": ""})])
    (first,) = receive_all(broker, "work", 1, lease_s=1)
    assert first.body == b'{"x": 1}'
    assert first.attributes == {"task": "t.add", "empty": ""}
    assert first.delivery_count == 1
    assert first.queue == "work"
    time.sleep(1.2)  # the 1 s lease runs out without an ack
    (again,) = receive_all(broker, "work", 1)
    assert again.message_id == first.message_id
    assert again.delivery_count == 2
    broker.ack([again])
    assert broker.receive("work", 10, 30, wait_s=0) == []


def test_bodies_that_are_not_sqs_text_round_trip(broker: SQSBroker) -> None:
    bodies = [b"\xff\x00binary", b"", "caf\u00e9 \ufffe".encode(), b"plain"]
    broker.send("bin", [OutgoingMessage(b) for b in bodies])
    got = receive_all(broker, "bin", len(bodies))
    assert sorted(d.body for d in got) == sorted(bodies)


def test_batching_counts_requests_at_the_server(broker: SQSBroker, aws: MotoServer) -> None:
    broker.queue("batch")  # resolve (and create) first: only the data path is counted
    with aws.count_requests() as sent:
        broker.send("batch", [OutgoingMessage(f'{{"n": {i}}}'.encode()) for i in range(25)])
    assert sent.of("sqs") == {"SendMessageBatch": 3}
    with aws.count_requests() as one:
        broker.send("batch", [OutgoingMessage(b'{"n": 25}')])
    assert one.of("sqs") == {"SendMessage": 1}
    got = receive_all(broker, "batch", 26)
    assert len({d.message_id for d in got}) == 26
    with aws.count_requests() as acked:
        broker.ack(got)
    assert acked.of("sqs") == {"DeleteMessageBatch": 3}


def test_receive_takes_at_most_ten_in_one_request(broker: SQSBroker, aws: MotoServer) -> None:
    broker.send("prefetch", [OutgoingMessage(b"m") for _ in range(30)])
    with aws.count_requests() as calls:
        got = broker.receive("prefetch", 25, 30, wait_s=1)
    assert 1 <= len(got) <= 10
    assert calls.of("sqs") == {"ReceiveMessage": 1}


def test_send_batches_split_by_total_size(broker: SQSBroker, aws: MotoServer) -> None:
    body = b"x" * 400_000  # three of these exceed SQS's 1 MiB per batch request
    broker.queue("big")
    with aws.count_requests() as calls:
        broker.send("big", [OutgoingMessage(body) for _ in range(4)])
    assert calls.of("sqs") == {"SendMessageBatch": 2}


def test_nack_delays_and_extend_keeps_the_lease(broker: SQSBroker) -> None:
    broker.send("n", [OutgoingMessage(b"a"), OutgoingMessage(b"b")])
    a, b = sorted(receive_all(broker, "n", 2, lease_s=1), key=lambda d: d.body)
    broker.nack([a], delay_s=0)
    broker.extend([b], 30)
    time.sleep(1.2)
    again = receive_all(broker, "n", 1)
    assert [d.body for d in again] == [b"a"]
    assert again[0].delivery_count == 2
    assert broker.receive("n", 10, 30, wait_s=0) == []  # b is still leased


def test_release_gives_back_without_spending_a_delivery(broker: SQSBroker) -> None:
    broker.send("r", [OutgoingMessage(b"keep", attributes={"task": "x"})])
    (first,) = receive_all(broker, "r", 1)
    broker.release([first])
    (again,) = receive_all(broker, "r", 1)
    assert again.body == b"keep"
    assert again.attributes == {"task": "x"}
    assert again.delivery_count == 1
    broker.nack([again])
    (third,) = receive_all(broker, "r", 1)
    assert third.delivery_count == 2


def test_dead_letter_records_reason_and_listing_does_not_consume(broker: SQSBroker) -> None:
    broker.send("d", [OutgoingMessage(b"poison-1"), OutgoingMessage(b"poison-2")])
    got = receive_all(broker, "d", 2)
    broker.dead_letter(got, "MalformedMessage: body is not JSON")
    assert broker.receive("d", 10, 30, wait_s=0) == []
    for _ in range(2):  # listing twice sees the same letters
        letters = broker.dead_letters("d")
        assert sorted(x.body for x in letters) == [b"poison-1", b"poison-2"]
        assert {x.reason for x in letters} == {"MalformedMessage: body is not JSON"}
        assert {x.queue for x in letters} == {"d"}
    assert broker.stats("d").dead_lettered == 2


def test_redrive_policy_moves_messages_received_too_often(prefix: str) -> None:
    broker = make_broker(prefix, "&max_receive_count=1")
    broker.send("rd", [OutgoingMessage(b"crashy")])
    (first,) = receive_all(broker, "rd", 1)
    broker.nack([first])
    assert broker.receive("rd", 10, 30, wait_s=1) == []  # moved by SQS on the second receive
    (letter,) = broker.dead_letters("rd")
    assert letter.body == b"crashy"
    assert letter.reason.startswith("MaxReceiveCount")


def test_stats_and_purge(broker: SQSBroker) -> None:
    broker.send("s", [OutgoingMessage(b"1"), OutgoingMessage(b"2"), OutgoingMessage(b"3", delay_s=60)])
    assert len(broker.receive("s", 1, 30, wait_s=1)) == 1
    stats = broker.stats("s")
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead_lettered) == (1, 1, 1, 0)
    assert broker.purge("s") == 3


def test_delay_is_rounded_up_and_capped_at_the_sqs_maximum(broker: SQSBroker) -> None:
    broker.send("delay", [OutgoingMessage(b"later", delay_s=0.2)])
    assert broker.receive("delay", 1, 30, wait_s=0) == []  # 0.2 s asks SQS for 1 s, never 0
    assert receive_all(broker, "delay", 1)[0].body == b"later"


def test_fifo_groups_deduplicates_and_refuses_delays(broker: SQSBroker, aws: MotoServer) -> None:
    messages = [
        OutgoingMessage(b"1", ordering_key="acct-1", dedup_id="m1"),
        OutgoingMessage(b"2", ordering_key="acct-1", dedup_id="m2"),
        OutgoingMessage(b"1 again", ordering_key="acct-1", dedup_id="m1"),  # same dedup id: dropped
    ]
    broker.send("orders.fifo", messages)
    got = receive_all(broker, "orders.fifo", 2)
    assert [d.body for d in got] == [b"1", b"2"]
    assert {d.ordering_key for d in got} == {"acct-1"}
    broker.ack(got)
    with aws.count_requests() as calls, pytest.raises(FifoDelayUnsupported, match="cannot delay"):
        broker.send("orders.fifo", [OutgoingMessage(b"x", delay_s=5, dedup_id="m3")])
    assert calls.service("sqs") == 0


def test_fifo_option_makes_every_queue_fifo(prefix: str) -> None:
    broker = make_broker(prefix, "&fifo=true")
    assert broker.limits.per_message_delay is False
    assert broker.queue("jobs").sqs_name == f"{prefix}jobs.fifo"
    broker.send("jobs", [OutgoingMessage(b"a", dedup_id="a"), OutgoingMessage(b"b", dedup_id="b")])
    assert sorted(d.body for d in receive_all(broker, "jobs", 2)) == [b"a", b"b"]


def test_limits_follow_the_queue_maximum_message_size(broker: SQSBroker) -> None:
    assert broker.limits.max_body_bytes == 1_048_576
    assert broker.limits.max_batch == 10
    assert broker.limits.max_delay_s == 900
    assert broker.limits.max_lease_s == 43_200
    assert broker.limits.max_wait_s == 20
    sqs = broker.clients.get("sqs")
    url = sqs.create_queue(QueueName=f"{broker.prefix}small", Attributes={"MaximumMessageSize": "2048"})["QueueUrl"]
    assert url
    broker.queue("small")
    assert broker.limits.max_body_bytes == 2048


def test_oversize_without_bucket_fails_before_sending(broker: SQSBroker, aws: MotoServer) -> None:
    broker.queue("large")
    big = b"x" * (1_048_576 + 1)
    with aws.count_requests() as calls, pytest.raises(MessageTooLarge, match="bucket") as info:
        broker.send("large", [OutgoingMessage(b"small"), OutgoingMessage(big)])
    assert info.value.limit == 1_048_576
    assert info.value.size > 1_048_576
    assert calls.service("sqs") == 0 and calls.service("s3") == 0
    assert broker.stats("large").ready == 0


def test_claim_check_round_trip_deletes_object_after_ack_only(prefix: str, bucket: str, aws: MotoServer) -> None:
    broker = make_broker(prefix, f"&bucket={bucket}")
    payload = b"p" * (2 * 1024 * 1024)
    broker.send("cc", [OutgoingMessage(payload, attributes={"task": "t"})])
    s3 = broker.clients.get("s3")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    (first,) = receive_all(broker, "cc", 1)
    assert first.body == payload
    assert first.attributes == {"task": "t"}
    broker.nack([first])  # a retry keeps the payload
    (second,) = receive_all(broker, "cc", 1)
    assert second.body == payload
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    broker.ack([second])
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_claim_checked_dead_letter_keeps_its_payload(prefix: str, bucket: str) -> None:
    broker = make_broker(prefix, f"&bucket={bucket}")
    payload = b"q" * (1_100_000)
    broker.send("ccd", [OutgoingMessage(payload)])
    broker.dead_letter(receive_all(broker, "ccd", 1), "Reject: no")
    (letter,) = broker.dead_letters("ccd")
    assert letter.body == payload and letter.reason == "Reject: no"


def test_missing_queue_without_create_missing_names_deploy(prefix: str) -> None:
    broker = make_broker(prefix, "&create_missing=false")
    with pytest.raises(QueueNotFound, match="cloudq deploy"):
        broker.send("absent", [OutgoingMessage(b"x")])
    off = make_broker(prefix, create_missing=False)
    with pytest.raises(QueueNotFound, match="absent2"):
        off.receive("absent2", 1, 30)


def test_unreachable_endpoint_is_backend_unavailable(prefix: str) -> None:
    from cloudq_aws.testing import free_port

    broker = make_broker(prefix, f"&endpoint_url=http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable, match="127.0.0.1"):
        broker.send("q", [OutgoingMessage(b"x")])


def test_missing_credentials_name_the_variables(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    broker = make_broker(prefix)
    with pytest.raises(CredentialsMissing, match="AWS_ACCESS_KEY_ID"):
        broker.send("q", [OutgoingMessage(b"x")])


def test_options_are_checked(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown option.*'colour'"):
        make_broker(prefix, "&colour=blue")
    with pytest.raises(ConfigurationError, match="'wait' must be between 0 and 20"):
        make_broker(prefix, "&wait=30")
    with pytest.raises(ConfigurationError, match="letters, digits"):
        make_broker(prefix).queue("bad name")
    broker = SQSBroker.from_url("sqs://?wait=5", Settings(broker_options={"prefix": "p-", "visibility": 90}))
    assert (broker.prefix, broker.wait_s, broker.visibility_s, broker.limits.max_wait_s) == ("p-", 5, 90, 5)


def test_import_and_construction_make_no_client() -> None:
    code = (
        "import sys, cloudq_aws.sqs, cloudq_aws.dynamodb\n"
        "from cloudq.config import Settings\n"
        "b = cloudq_aws.sqs.SQSBroker.from_url('sqs://', Settings())\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'SDK imported'\n"
        "assert not b.clients._clients\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_message_whose_s3_payload_is_gone_comes_back_malformed(prefix: str, bucket: str) -> None:
    broker = make_broker(prefix, f"&bucket={bucket}")
    broker.send("gone", [OutgoingMessage(b"g" * 1_100_000)])
    s3 = broker.clients.get("s3")
    (obj,) = s3.list_objects_v2(Bucket=bucket)["Contents"]
    s3.delete_object(Bucket=bucket, Key=obj["Key"])
    (delivery,) = broker.receive("gone", 10, 30, wait_s=1)
    assert delivery.malformed is not None and delivery.malformed.startswith("ClaimCheckMissing: payload object s3://")
    assert delivery.receipt.claim is None  # never fetched again, never deleted on ack
