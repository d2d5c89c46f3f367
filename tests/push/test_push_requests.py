"""The push app answering hand-made requests over real HTTP: malformed bodies, OIDC tokens, delivery
counts, delayed messages, CloudEvents and the checks made when the app is built."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloudq_gcp.deferral import NOT_BEFORE
from cloudq_gcp.push import PushRetry, make_cloud_event_function, make_wsgi_app
from cloudq_gcp.push.envelope import MalformedPush
from push_helpers import ensure_queue, make_app, post, push_body, wait_for

from cloudq import App
from cloudq.envelope import build
from cloudq.errors import ConfigurationError

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60), pytest.mark.usefixtures("pubsub_emulator")]

AUDIENCE = "https://tasks-abc123-uc.a.run.app/push"
PUSH_ACCOUNT = "pubsub-push@cloudq-test.iam.gserviceaccount.com"


def task_body(app: App, name: str, *args: Any, **extra: Any) -> bytes:
    return build(f"t-{time.monotonic_ns()}", name, list(args), {}, sent_at=time.time(), **extra)


@pytest.fixture
def counted(project: str, unique: str) -> tuple[App, list[int]]:
    """An app with ``count(n)`` recording its runs and ``fail(n)`` always failing (max_retries=1)."""
    app = make_app(project, unique)
    runs: list[int] = []

    @app.task(name="count")
    def count(n: int) -> int:
        runs.append(n)
        return n

    @app.task(name="fail", max_retries=1, retry_backoff=7, autoretry_for=(Exception,))
    def fail(n: int) -> None:
        runs.append(n)
        raise ValueError(f"failed {n}")

    return app, runs


# -- malformed requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "body is not JSON"),
        (b"[1, 2]", "not a push envelope object"),
        (b'{"subscription": "s"}', "'message' is missing"),
        (b'{"message": {"data": "aGk="}}', "messageId"),
        (b'{"message": {"messageId": "1", "data": "***"}}', "not valid base64"),
        (b'{"message": {"messageId": "1", "data": 5}}', "not a base64 string"),
        (b'{"message": {"messageId": "1", "attributes": {"a": 1}}}', "object of strings"),
        (b'{"message": {"messageId": "1", "publishTime": "yesterday"}}', "not an RFC 3339 time"),
        (b'{"message": {"messageId": "1"}, "deliveryAttempt": -1}', "deliveryAttempt"),
    ],
)
def test_malformed_push_bodies_get_400_with_the_reason_and_nothing_runs(
    counted: tuple[App, list[int]],
    wsgi_server: Callable[[Any], str],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    reason: str,
) -> None:
    app, runs = counted
    url = wsgi_server(make_wsgi_app(app))
    with caplog.at_level(logging.WARNING, logger="cloudq.push"):
        status, answer, _ = post(url, body)
    assert status == 400
    assert reason in answer["error"]
    assert reason in caplog.text  # logged with the reason
    assert runs == []


def test_push_from_a_subscription_of_no_queue_of_this_app_gets_400(
    counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str]
) -> None:
    app, runs = counted
    url = wsgi_server(make_wsgi_app(app))
    body = push_body(task_body(app, "count", 1), "projects/other/subscriptions/elsewhere")
    status, answer, _ = post(url, body)
    assert status == 400 and "not a queue" in answer["error"]
    assert runs == []


def test_other_methods_and_oversized_bodies(counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str]) -> None:
    import urllib.error
    import urllib.request

    app, runs = counted
    url = wsgi_server(make_wsgi_app(app, max_body_bytes=100))
    with urllib.request.urlopen(url, timeout=10) as response:  # health probe
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as put:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="PUT"), timeout=10)
    assert put.value.code == 405
    status, answer, _ = post(url, b"{" + b" " * 200 + b"}")
    assert status == 413 and "exceeds 100 bytes" in answer["error"]
    assert runs == []


# -- delivery counts, outcomes, delays ----------------------------------------------------------------


def test_delivery_attempt_counts_retries_until_they_run_out(
    counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str]
) -> None:
    app, runs = counted
    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app))
    body = task_body(app, "fail", 1)
    status, answer, headers = post(url, push_body(body, paths.subscription, attempt=1))
    assert (status, answer["outcome"]) == (429, "retry")
    assert headers["Retry-After"] == "7"  # the task's backoff, for the logs: Pub/Sub's retry policy decides
    status, answer, _ = post(url, push_body(body, paths.subscription, attempt=2))
    assert (status, answer["outcome"]) == (200, "dead-lettered")
    assert "retries exhausted after attempt 2" in answer["reason"]
    [letter] = app.broker.dead_letters("default")
    assert letter.reason == answer["reason"] and letter.body == body
    assert runs == [1, 1]


def test_acked_and_unknown_tasks(counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str]) -> None:
    app, runs = counted
    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app))
    status, answer, _ = post(url, push_body(task_body(app, "count", 5), paths.subscription, attempt=1))
    assert (status, answer["outcome"]) == (200, "succeeded")
    status, answer, _ = post(url, push_body(task_body(app, "nope"), paths.subscription, attempt=1))
    assert (status, answer["outcome"]) == (200, "dead-lettered")
    assert answer["reason"].startswith("UnknownTask")
    assert runs == [5]


def test_delayed_message_is_refused_until_due_then_forwarded(
    counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str]
) -> None:
    app, runs = counted
    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app))
    body = task_body(app, "count", 9)
    early = push_body(body, paths.subscription, attributes={NOT_BEFORE: f"{time.time() + 60:.6f}", "cloudq-id": "x1"})
    status, answer, headers = post(url, early)
    assert (status, answer["outcome"]) == (429, "not due")
    assert 55 <= int(headers["Retry-After"]) <= 60
    due = push_body(body, paths.subscription, attributes={NOT_BEFORE: f"{time.time() - 1:.6f}", "cloudq-id": "x1"})
    status, answer, _ = post(url, due)
    assert (status, answer["outcome"]) == (200, "forwarded")
    assert runs == []  # the forwarded copy runs when it arrives, from Pub/Sub's first attempt
    [copy] = app.broker.receive("default", 10, 10, wait_s=5)
    assert copy.body == body and copy.message_id == "x1" and copy.delivery_count == 1
    app.broker.ack([copy])


@pytest.fixture
def bucket(gcs_emulator: Any, project: str, unique: str) -> Iterator[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    client = storage.Client(project=project, credentials=AnonymousCredentials())
    name = f"cloudq-push-{unique}"
    client.create_bucket(name)
    yield name
    client.close()


def test_claim_check_body_comes_from_cloud_storage_and_goes_after_success(
    project: str, unique: str, bucket: str, wsgi_server: Callable[[Any], str]
) -> None:
    from cloudq_gcp.pubsub_messages import CLAIM, MESSAGE_ID

    app = make_app(project, unique, bucket=bucket)
    runs: list[int] = []

    @app.task(name="count")
    def count(n: int) -> int:
        runs.append(n)
        return n

    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app))
    offload = app.broker.offload  # type: ignore[attr-defined]
    kept, lost = offload.put(task_body(app, "count", 8)), offload.put(task_body(app, "count", 9))
    offload.delete(lost)
    status, answer, _ = post(url, push_body(b"", paths.subscription, attributes={CLAIM: kept, MESSAGE_ID: "c1"}))
    assert (status, answer["outcome"]) == (200, "succeeded")
    status, answer, _ = post(url, push_body(b"", paths.subscription, attributes={CLAIM: lost, MESSAGE_ID: "c2"}))
    assert (status, answer["outcome"]) == (200, "dead-lettered")
    assert answer["reason"].startswith("MalformedMessage: ClaimCheckMissing")
    assert runs == [8]
    with pytest.raises(Exception, match="gone"):
        offload.get(kept)  # deleted once the task succeeded
    [letter] = app.broker.dead_letters("default")
    assert letter.message_id == "c2"


# -- OIDC -----------------------------------------------------------------------------------------


class Keys:
    """RSA keys, a local certificate endpoint in Google's format, and ID tokens signed with them."""

    def __init__(self, serve: Callable[[Any], str]) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._pem: dict[str, bytes] = {}
        public: dict[str, str] = {}
        for kid in ("google-key", "stranger-key"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._pem[kid] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            public[kid] = (
                key.public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode()
            )
        published = json.dumps({"google-key": public["google-key"]}).encode()  # the stranger's key is not Google's
        self.fetches = 0

        def certs(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            self.fetches += 1
            start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=600")])
            return [published]

        self.url = serve(certs) + "/oauth2/v1/certs"

    def token(self, kid: str = "google-key", **claims: Any) -> str:
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": PUSH_ACCOUNT,
            "email_verified": True,
            "sub": "112233445566778899",
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        signer = crypt.RSASigner.from_string(self._pem[kid], key_id=kid)
        return str(jwt.encode(signer, payload).decode())


@pytest.fixture
def keys(wsgi_server: Callable[[Any], str]) -> Iterator[Keys]:
    yield Keys(wsgi_server)


@pytest.mark.parametrize(
    ("authorization", "status", "reason"),
    [
        (None, 401, "no Authorization header"),
        ("Basic dXNlcjpwYXNz", 401, "not a Bearer token"),
        ("Bearer not-a-jwt", 401, "token rejected"),
        ("stranger", 401, "token rejected"),  # signed by a key Google never published
        ("audience", 401, "token rejected"),
        ("expired", 401, "token rejected"),
        ("issuer", 401, "not Google"),
        ("email", 403, "not the push service account"),
        ("unverified", 403, "not verified"),
    ],
)
def test_oidc_failures_get_401_or_403_and_nothing_runs(
    counted: tuple[App, list[int]],
    wsgi_server: Callable[[Any], str],
    keys: Keys,
    authorization: str | None,
    status: int,
    reason: str,
) -> None:
    app, runs = counted
    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app, audience=AUDIENCE, service_account=PUSH_ACCOUNT, certs_url=keys.url))
    tokens = {
        "stranger": keys.token("stranger-key"),
        "audience": keys.token(aud="https://someone-else.run.app/"),
        "expired": keys.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "issuer": keys.token(iss="https://evil.example"),
        "email": keys.token(email="intruder@cloudq-test.iam.gserviceaccount.com"),
        "unverified": keys.token(email_verified=False),
    }
    if authorization in tokens:
        authorization = f"Bearer {tokens[authorization]}"
    headers = {"Authorization": authorization} if authorization else {}
    got, answer, _ = post(url, push_body(task_body(app, "count", 1), paths.subscription, attempt=1), headers)
    assert got == status
    assert reason in answer["error"]
    assert runs == []


def test_valid_oidc_token_runs_the_task_and_certificates_are_cached(
    counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str], keys: Keys
) -> None:
    app, runs = counted
    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app, audience=AUDIENCE, service_account=PUSH_ACCOUNT, certs_url=keys.url))
    headers = {"Authorization": f"Bearer {keys.token()}"}
    for n in (1, 2):
        status, answer, _ = post(url, push_body(task_body(app, "count", n), paths.subscription, attempt=1), headers)
        assert (status, answer["outcome"]) == (200, "succeeded")
    assert runs == [1, 2]
    assert keys.fetches == 1


# -- CloudEvents ------------------------------------------------------------------------------------


def test_cloud_event_function_runs_an_eventarc_pubsub_event(counted: tuple[App, list[int]]) -> None:
    import functions_framework
    from cloudevents.http import CloudEvent

    app, runs = counted
    paths = ensure_queue(app)
    function = functions_framework.cloud_event(make_cloud_event_function(app))

    def event(body: bytes, **data: Any) -> CloudEvent:
        envelope = json.loads(push_body(body, "projects/p/subscriptions/eventarc-us-central1-trigger-sub-123"))
        attributes = {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/{paths.topic}",
        }
        return CloudEvent(attributes, {**envelope, **data})

    assert function(event(task_body(app, "count", 3))) is None  # returns: done
    with pytest.raises(PushRetry):
        function(event(task_body(app, "fail", 4)))  # raises: the trigger redelivers
    with pytest.raises(MalformedPush):
        function(CloudEvent({"type": "t", "source": "s"}, {"message": {"data": "***", "messageId": "1"}}))
    assert runs == [3, 4]


# -- checks when the app is built -----------------------------------------------------------------------


def test_tasks_longer_than_the_push_deadline_are_refused_when_the_app_is_built(project: str, unique: str) -> None:
    app = make_app(project, unique)

    @app.task(time_limit=900)
    def report() -> None:
        return None

    with pytest.raises(ConfigurationError, match=r"at most 600s.*report.*time_limit=900s"):
        make_wsgi_app(app)


def test_push_app_needs_a_pubsub_broker_and_an_audience_for_the_account() -> None:
    with pytest.raises(ConfigurationError, match="pubsub://"):
        make_wsgi_app(App("x", broker="memory://", results="memory://"))
    with pytest.raises(ConfigurationError, match="audience"):
        make_wsgi_app(App("y", broker="pubsub://p", results="memory://"), service_account=PUSH_ACCOUNT)


def test_envelope_reader_takes_nanosecond_times_and_snake_case_fields() -> None:
    from cloudq_gcp.push.envelope import from_mapping

    pushed = from_mapping(
        {
            "message": {
                "data": base64.b64encode(b"x").decode(),
                "message_id": "42",
                "publish_time": "2026-11-24T11:22:33.123456789Z",
                "orderingKey": "k",
            },
            "subscription": "projects/p/subscriptions/s",
            "deliveryAttempt": 3,
        }
    )
    assert pushed.message.message_id == "42" and pushed.message.ordering_key == "k"
    assert pushed.message.publish_time.microsecond == 123456
    assert pushed.delivery_attempt == 3


def test_poison_pushes_are_dead_lettered_and_the_pushes_around_them_run(
    counted: tuple[App, list[int]], wsgi_server: Callable[[Any], str]
) -> None:
    app, runs = counted
    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app))
    poison = {
        "nested": b"[" * 100_000 + b"]" * 100_000,
        "eta": b'{"v": 1, "id": "far", "task": "count", "args": [0], "eta": 1e999}',
        "retries": b'{"v": 1, "id": "many", "task": "count", "args": [0], "retries": ' + b"1" + b"0" * 40 + b"}",
    }
    reasons = {}
    for n, (name, body) in enumerate(poison.items()):
        status, answer, _ = post(url, push_body(task_body(app, "count", n), paths.subscription, attempt=1))
        assert (status, answer["outcome"]) == (200, "succeeded")
        status, answer, _ = post(url, push_body(body, paths.subscription, attempt=1, message_id=f"p{n}"))
        assert (status, answer["outcome"]) == (200, "dead-lettered"), name
        reasons[name] = answer["reason"]
    assert reasons["nested"].startswith("MalformedMessage: body is nested too deeply")
    assert reasons["eta"].startswith("MalformedMessage: invalid envelope: eta")
    assert reasons["retries"].startswith("MalformedMessage: invalid envelope: retries")
    assert runs == [0, 1, 2]


def test_rate_limit_applies_per_instance_the_push_request_waits_or_defers(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    """ack_deadline=10: a push may wait 5 s for its token. 1/s waits in place; 1/m is published
    again with the delay until its token and answered 200 (no delivery attempt spent)."""
    from cloudq.runtime.ratelimit import RateLimits
    from cloudq.testing.clock import FakeClock

    app = make_app(project, unique)

    @app.task(name="often", rate_limit="1/s")
    def often(n: int) -> int:
        return n

    @app.task(name="rarely", rate_limit="1/m")
    def rarely(n: int) -> int:
        return n

    paths = ensure_queue(app)
    wsgi = make_wsgi_app(app)
    clock = FakeClock()
    wsgi.handler.rate_limits = RateLimits(app, clock, clock.sleep)
    url = wsgi_server(wsgi)

    bodies: list[bytes] = []

    def push(name: str, n: int) -> tuple[int, str]:
        bodies.append(task_body(app, name, n))
        status, answer, _ = post(url, push_body(bodies[-1], paths.subscription, attempt=1, attributes={"task": name}))
        return status, answer["outcome"]

    assert [push("often", 1), push("often", 2)] == [(200, "succeeded")] * 2
    assert clock.slept == [pytest.approx(1.0)]  # the second waited for its token, then ran
    assert [push("rarely", 1), push("rarely", 2)] == [(200, "succeeded"), (200, "rate-limited")]
    assert clock.slept == [pytest.approx(1.0)]  # 60 s is past what a push may wait: not slept
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]

    subscriber = pubsub_v1.SubscriberClient()
    try:
        pulled = wait_for(
            lambda: (
                subscriber.pull(
                    request={"subscription": paths.subscription, "max_messages": 10}, timeout=10
                ).received_messages
            ),
            what="the delayed copy",
        )
    finally:
        subscriber.close()
    [copy] = pulled
    assert copy.message.data == bodies[-1]  # the same envelope: same attempt count
    assert float(copy.message.attributes[NOT_BEFORE]) > time.time() + 50  # due with its token, 60 s on
