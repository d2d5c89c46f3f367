"""The core's part of dead-letter operations: selection, the fresh start a redrive gives a body,
what is shown (and redacted)."""

from __future__ import annotations

import pytest

from cloudq import deadletters as dl
from cloudq.envelope import build, decode
from cloudq.errors import SignatureInvalid
from cloudq.interfaces import DeadLetter

KEY = b"app-key"


def body(retries: int = 0, key: bytes | None = KEY, headers: dict[str, str] | None = None) -> bytes:
    raw = build("t-1", "proj.add", [1], {}, sent_at=1.0, headers=headers, key=None)
    env = decode(raw).model_copy(update={"retries": retries})
    return env.encode(key)


def test_fresh_start_resets_retries_and_signs_with_the_apps_key() -> None:
    reset = dl.fresh_start(KEY)(body(retries=4))
    assert decode(reset, KEY).retries == 0  # verifies with the app's key
    with pytest.raises(SignatureInvalid):
        decode(reset, b"another key")


def test_fresh_start_keeps_what_it_cannot_or_need_not_rewrite() -> None:
    rewrite = dl.fresh_start(KEY)
    for kept in (body(retries=0), body(retries=2, key=b"other"), body(retries=2, key=None), b"not json", b"\xff"):
        assert rewrite(kept) == kept
    assert dl.fresh_start(None)(body(retries=2)) == body(retries=2)  # signed, and the app cannot sign
    assert decode(dl.fresh_start(None)(body(retries=2, key=None))).retries == 0


def test_selection_by_ids_error_type_task_and_time() -> None:
    letter = DeadLetter(body(), "proj.errors.Timeout: slow (retries exhausted)", "q", "m-1", dead_at=100.0)
    assert dl.Selection().matches(letter)
    assert dl.Selection(ids=frozenset({"m-1"})).matches(letter)
    assert dl.Selection(ids=frozenset({"t-1"})).matches(letter)  # the task id addresses it too
    assert not dl.Selection(ids=frozenset({"m-2"})).matches(letter)
    assert dl.Selection(error_type="Timeout").matches(letter)
    assert dl.Selection(error_type="proj.errors.Timeout").matches(letter)
    assert not dl.Selection(error_type="errors.Time").matches(letter)
    assert dl.Selection(task="proj.add").matches(letter) and not dl.Selection(task="proj.sub").matches(letter)
    assert dl.Selection(since=100.0).matches(letter) and not dl.Selection(since=100.5).matches(letter)
    undated = DeadLetter(body(), "x", "q", "m-1")
    assert not dl.Selection(since=0.0).matches(undated)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 910.0), ("30m", -800.0), ("1h", -2600.0), ("2d", 1000 - 172800), ("1970-01-01T00:10:00", 600.0)],
)
def test_since_takes_a_duration_or_an_iso_time(text: str, expected: float) -> None:
    assert dl.parse_since(text, now=1000.0) == expected
    assert dl.parse_since("1970-01-01T01:00:00+01:00", now=0.0) == 0.0


def test_since_rejects_anything_else_in_one_line() -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        dl.parse_since("last week", now=0.0)


def test_describe_redacts_credential_headers_and_shows_the_reason() -> None:
    headers = {"Authorization": "Bearer s3cret", "x-api-key": "k", "traceparent": "00-ab-cd-01"}
    shown = dl.describe(DeadLetter(body(headers=headers), "KeyError: 'a'\nTraceback ...", "q", "m-1", 0.0))
    assert shown["body"]["headers"] == {"Authorization": "***", "x-api-key": "***", "traceparent": "00-ab-cd-01"}
    assert "s3cret" not in str(shown)
    assert (shown["task"], shown["error_type"], shown["dead_at"]) == ("proj.add", "KeyError", "1970-01-01T00:00:00Z")
    assert shown["body"]["sig"].startswith("v2:")
    raw = dl.describe(DeadLetter(b"\xffgarbage", "MalformedMessage: body is not JSON", "q", "m-2"))
    assert raw["task_id"] is None and raw["body"] == "\ufffdgarbage"


def test_a_broker_without_the_capability_is_named_in_one_error() -> None:
    class PlainBroker:  # a Broker that cannot redrive: the core says so instead of failing later
        pass

    class StandIn:
        broker = PlainBroker()

    with pytest.raises(dl.DeadLettersUnsupported, match="PlainBroker cannot redrive or delete dead letters"):
        dl.admin(StandIn())  # type: ignore[arg-type]
