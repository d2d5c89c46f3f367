"""The pydantic-free fast paths (argument checks, settings) accept exactly what pydantic accepts,
with the same result; everything else still goes to pydantic."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from cloudq.config import Settings, load_settings
from cloudq.plaintypes import Defer, check_for
from cloudq.settings_schema import validate

PLAIN = [
    int,
    str,
    float,
    bool,
    type(None),
    Any,
    Optional[int],  # noqa: UP045  (typing.Optional spelled as users write it)
    int | None,
    float | None,
    list[int],
    list[float],
    list[str] | None,
    dict[str, int],
    dict[str, list[bool]],
    tuple[int, ...],
    list[Any],
    dict[str, Any],
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("annotation", PLAIN, ids=str)
@settings(max_examples=300, deadline=None)
@given(value=values)
def test_the_fast_check_accepts_only_what_pydantic_accepts_with_the_same_result(annotation, value):
    check = check_for(annotation)
    assert check is not None
    try:
        fast = check(value)
    except Defer:
        return  # pydantic decides: it may accept (coercing) or reject, as before
    adapter = TypeAdapter(annotation)
    assert same(fast, adapter.validate_python(value))  # the worker's call value
    assert same(json.loads(json.dumps(fast)), adapter.dump_python(fast, mode="json"))  # the producer's JSON


@pytest.mark.parametrize("annotation", [set[int], int | str, dict[int, int], list, list[bytes] | None, bytes], ids=str)
def test_other_annotations_have_no_fast_check(annotation):
    assert check_for(annotation) is None


def test_a_task_validates_without_pydantic_until_a_value_needs_it():
    code = (
        "import sys, cloudq\n"
        "app = cloudq.App('t', broker='memory://', task_routes={'a.*': 'q'})\n"
        "@app.task()\n"
        "def add(a: int, b: float = 1.0, *rest: str, c: list[int] | None = None) -> int:\n"
        "    return a\n"
        "add.delay(1, 2, 'x', c=[3])\n"
        "assert add.validator.to_call([1, 2.5], {}) == ([1, 2.5], {'c': None})\n"
        "print('pydantic' in sys.modules)\n"
        "try:\n"
        "    add.delay('one')\n"
        "except cloudq.InvalidArguments as exc:\n"
        "    print(exc)\n"
        "print(add.validator.to_message(('7',), {}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "False"
    assert (
        out[1] == "t.add: argument a: Input should be a valid integer, unable to parse string as an integer (got 'one')"
    )
    assert out[2] == "([7], {})"  # pydantic's coercion; the defaults are left to the worker, as in Celery


SETTING_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "broker": st.one_of(st.none(), st.text(max_size=4)),
        "default_queue": st.one_of(st.text(max_size=4), st.integers()),
        "visibility_timeout": st.one_of(st.integers(-2, 50000), st.floats(-1, 50000), st.text(max_size=3)),
        "prefetch_multiplier": st.one_of(st.integers(-1, 2000), st.booleans(), st.floats(0, 5)),
        "concurrency": st.one_of(st.none(), st.integers(-1, 2000)),
        "pool": st.sampled_from(["threads", "prefork", "gevent", 3]),
        "routes": st.dictionaries(st.text(max_size=2), st.one_of(st.text(max_size=2), st.integers()), max_size=2),
        "retry_on": st.lists(st.sampled_from(["OSError", 3, ValueError]), max_size=2),
        "track_started": st.one_of(st.booleans(), st.sampled_from(["true", "0", 1])),
        "max_retries": st.one_of(st.none(), st.integers(-1, 5), st.text(max_size=2)),
    },
)


@settings(max_examples=300, deadline=None)
@given(given_values=SETTING_VALUES)
def test_settings_built_without_pydantic_equal_pydantics(given_values):
    try:
        expected = validate(given_values)
    except Exception as exc:
        with pytest.raises(type(exc)):
            Settings(**given_values)
        return
    built = Settings(**given_values)
    assert all(same(getattr(built, name), expected[name]) for name in Settings.model_fields)


def test_settings_errors_still_name_the_setting_and_its_source(tmp_path):
    with pytest.raises(Exception, match=r"invalid setting 'visibility_timeout' \(from App\(\)\).*less than or equal"):
        load_settings({"visibility_timeout": 50000}, environ={}, cwd=tmp_path)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)
json_bodies = st.one_of(
    st.dictionaries(st.sampled_from(["id", "task", "v", "args"]), json_values, max_size=4).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.sampled_from(['{"id": "a", "id": "b"}', '{"id": NaN}', '{"id": "x", "n": 1e999}', "[" * 5000, '{"id": ""}']),
)


@settings(max_examples=500, deadline=None)
@given(body=json_bodies)
def test_the_revoke_checks_task_id_is_peek_ids(body):
    from cloudq.envelope import peek_id
    from cloudq.interfaces import Delivery
    from cloudq.runtime.revocations import decoded_id

    delivery = Delivery(body, None, 1, "q")  # type: ignore[arg-type]  # a str body reads as bytes do
    assert decoded_id(delivery, None) == peek_id(body)
