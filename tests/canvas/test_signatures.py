"""Signatures pin Celery's behaviour: options vs kwargs, partials prepend, immutability, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import cloudq
from cloudq import App, InvalidArguments, Signature, chain, signature
from cloudq.envelope import decode
from cloudq.errors import InvalidOptions
from cloudq.testing.workers import run_burst


def test_signature_keywords_are_send_options_not_task_kwargs(app: App) -> None:
    add = app.tasks["canvas.add"]
    sig = add.signature((2, 2), countdown=10)  # the old silent difference: countdown became a kwarg
    assert (sig.args, sig.kwargs, sig.options) == ((2, 2), {}, {"countdown": 10})
    positional = add.signature((2,), {"y": 3}, {"queue": "q1"}, priority=3)
    assert (positional.args, positional.kwargs, positional.options) == ((2,), {"y": 3}, {"queue": "q1", "priority": 3})
    assert add.subtask is not None and add.s(1, y=2).kwargs == {"y": 2}


def test_partial_arguments_are_prepended_and_kwargs_merged(app: App) -> None:
    pair = app.tasks["canvas.pair"]
    assert pair.s(2)(8) == [8, 2]  # Celery: add.s(2).delay(8) runs add(8, 2)
    clone = pair.s(y=1).clone((5,), {"y": 2}, countdown=3)
    assert (clone.args, clone.kwargs, clone.options) == ((5,), {"y": 2}, {"countdown": 3})
    result = pair.s(2).delay(8)
    run_burst(app, timeout=30)
    assert result.get(timeout=5) == [8, 2]


def test_immutable_signatures_keep_their_arguments_but_a_local_call_still_merges(app: App) -> None:
    pair = app.tasks["canvas.pair"]
    sig = pair.si(1, 2)
    assert sig.immutable and sig.clone((9,)).args == (1, 2)
    assert sig.clone((9,), countdown=1).options == {"countdown": 1}  # options still apply
    assert pair.si(1)(9) == [9, 1]  # Celery's __call__ forces the merge
    assert pair.s(1, 2).set(immutable=True).immutable


def test_set_updates_in_place_and_clone_copies_links(app: App) -> None:
    add = app.tasks["canvas.add"]
    sig = add.s(1, 1)
    assert sig.set(countdown=5, queue="q") is sig and sig.options == {"countdown": 5, "queue": "q"}
    callback = add.s(3)
    assert sig.link(callback) is callback and sig.link_error(add.s(0)) is not None
    clone = sig.clone()
    clone.options["link"][0].set(queue="other")
    assert "queue" not in sig.options["link"][0].options


def test_json_form_round_trips_with_links_and_times(app: App) -> None:
    add = app.tasks["canvas.add"]
    sig = add.s(1, 2).set(eta=datetime(2030, 1, 1, tzinfo=UTC), expires=datetime(2030, 1, 2, tzinfo=UTC))
    sig.link(add.si(5, 5))
    data = json.loads(json.dumps(sig.to_dict()))
    assert data["task"] == "canvas.add" and data["args"] == [1, 2] and data["immutable"] is False
    assert data["options"]["eta"] == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert data["options"]["expires"] == "2030-01-02T00:00:00+00:00"
    assert data["options"]["link"] == [add.si(5, 5).to_dict()]
    back = Signature.from_dict(data, app)
    assert back == sig.to_dict() and back.options["link"][0].immutable
    assert signature(data, app=app).to_dict() == data
    assert isinstance(cloudq.signature(chain(add.s(1, 1), add.s(2)).to_dict(), app=app), chain)


def test_a_producer_that_only_knows_the_name_can_send_it(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    producer = App("producer", broker=url, results=url)
    result = signature("canvas.add", args=(2, 3), app=producer).apply_async()
    worker_app = App("worker", broker=url, results=url)
    from canvas_tasks import register

    register(worker_app)
    run_burst(worker_app, timeout=30)
    assert worker_app.AsyncResult(result.id).get(timeout=5) == 5
    producer.close()
    worker_app.close()


def test_bad_options_and_arguments_fail_at_send_naming_them(app: App) -> None:
    add = app.tasks["canvas.add"]
    with pytest.raises(InvalidOptions, match="retry_policy"):
        add.s(1, 2).set(retry_policy={}).delay()
    with pytest.raises(InvalidArguments):
        add.s(1, 2, 3).delay()
    with pytest.raises(InvalidOptions, match="link/link_error take signatures"):
        add.s(1, 2).link("canvas.add")  # type: ignore[arg-type]


def test_freeze_assigns_the_id_the_send_uses(app: App) -> None:
    add = app.tasks["canvas.add"]
    sig = add.s(1, 2)
    frozen = sig.freeze()
    assert sig.id == frozen.id and sig.freeze().id == frozen.id
    assert sig.delay().id == frozen.id


def test_link_and_link_error_travel_in_the_envelope(app: App) -> None:
    add = app.tasks["canvas.add"]
    sig = add.s(1, 2)
    sig.link(add.s(10))
    sig.link_error(app.tasks["canvas.failed_id"].s())
    ((_, message),) = app.messages_for([sig])
    env = decode(message.body)
    assert [c["task"] for c in env.callbacks or []] == ["canvas.add"]
    assert [c["task"] for c in env.errbacks or []] == ["canvas.failed_id"]
    assert all((c.get("options") or {}).get("task_id") is None for c in env.callbacks or [])


def test_signed_envelopes_cover_the_canvas_fields(make_app) -> None:
    app = make_app(signing_key="k" * 32)
    add = app.tasks["canvas.add"]
    ((_, message),) = app.messages_for([add.s(1, 2) | add.s(3)])
    data = json.loads(message.body)
    data["chain"][0]["task"] = "canvas.fail"  # swap the next step
    from cloudq.errors import SignatureInvalid

    with pytest.raises(SignatureInvalid):
        decode(json.dumps(data), app.signing_key)
    assert decode(message.body, app.signing_key).chain
