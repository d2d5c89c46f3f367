"""Every backend reads its options strictly (a typo names the close match and the allowed options),
and a URL that cannot work as a broker or results URL fails at App(...), saying why."""

from __future__ import annotations

import re

import pytest

from cloudq import App
from cloudq.config import Settings
from cloudq.errors import ConfigurationError, MissingExtra
from cloudq.registry import open_broker, open_results


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("url", "settings", "expected"),
    [
        ("memory://?colour=blue", {}, "memory://: unknown option 'colour' in the URL; allowed options: max_body_bytes"),
        (
            "memory://",
            {"broker_options": {"max_delivery": 3}},
            "'max_delivery' in broker_options (did you mean 'max_deliveries'?)",
        ),
        ("sqlite:///q.db", {"broker_options": {"timout": 3}}, "'timout' in broker_options (did you mean 'timeout'?)"),
        ("pubsub://proj?ack_deadlin=30", {}, "unknown option 'ack_deadlin' in the URL (did you mean 'ack_deadline'?)"),
        ("sqs://?prefx=shop-", {}, "unknown option 'prefx' in the URL (did you mean 'prefix'?)"),
    ],
)
def test_unknown_broker_options_name_the_close_match_and_the_allowed_ones(url, settings, expected):
    with pytest.raises(ConfigurationError) as caught:
        open_broker(url, Settings(**settings))
    assert expected in str(caught.value)
    assert "allowed options: " in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://?colour=blue", "unknown option 'colour'"),
        ("firestore://results?projct=p", "unknown option 'projct' in the URL (did you mean 'project'?)"),
        ("dynamodb://results?buckt=b", "unknown option 'buckt' in the URL (did you mean 'bucket'?)"),
    ],
)
def test_unknown_result_store_options_are_errors(url, expected):
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        open_results(url, Settings())


def test_the_embedded_result_store_checks_its_options_and_accepts_those_of_the_url_it_shares():
    app = App("x", broker="memory://?max_deliveries=3")
    assert app.results_url == "memory://?max_deliveries=3"
    app.results.get("nothing")
    typo = App("y", broker="memory://?max_deliveries=3", results_options={"max_deliverie": 1})
    with pytest.raises(ConfigurationError, match=re.escape("'max_deliverie' in results_options (did you mean")):
        typo.results


@pytest.mark.parametrize("url", ["sqs://myqueue", "sqs://myqueue?prefix=p-", "sqs:///jobs"])
def test_an_sqs_url_naming_a_queue_is_refused_saying_where_the_name_comes_from(url):
    with pytest.raises(ConfigurationError, match=r"sqs:// takes no queue name .*task's queue .*\?prefix="):
        App("x", broker=url).broker


@pytest.mark.parametrize(
    ("kind", "url", "expected"),
    [
        ("broker", "dynamodb://table", "dynamodb:// is a result scheme, not a broker scheme: use it as results="),
        ("broker", "firestore://col", "firestore:// is a result scheme, not a broker scheme: use it as results="),
        ("results", "sqs://", "sqs:// is a broker scheme, not a result scheme: use it as broker="),
        ("results", "pubsub://p", "pubsub:// is a broker scheme, not a result scheme: use it as broker="),
    ],
)
def test_a_scheme_of_the_other_kind_says_so_at_app_construction(kind, url, expected):
    with pytest.raises(ConfigurationError) as caught:
        App("x", **{kind: url})
    assert not isinstance(caught.value, MissingExtra)
    assert str(caught.value).startswith(expected)
