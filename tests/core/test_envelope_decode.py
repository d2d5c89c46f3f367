"""The envelope's hand-written core schema accepts and refuses exactly what cloudq's pydantic
models did (envelope_oracle.py, kept only as this test's oracle).

A differential property test: valid and near-valid bodies (wrong types, numbers just out of range,
missing and extra fields, junk nested anywhere), decoded by both; the same outcome, the same
reason, equal envelopes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from envelope_oracle import ChordPart as ChordPartModel
from envelope_oracle import Envelope as EnvelopeModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloudq.envelope import MAX_EPOCH_S, MAX_RETRIES, VERSION, json_schema, loads, signature, verify
from cloudq.envelope_schema import ChordPart, Envelope, decode
from cloudq.errors import MalformedMessage, UnsupportedVersion


def reference_decode(body: bytes | str, key: bytes | None = None) -> EnvelopeModel:
    """The decoder before this one, kept verbatim: pydantic-core first, then the explained path."""
    if key is None:
        try:
            env = EnvelopeModel.model_validate_json(body)
        except ValidationError:
            pass
        else:
            if env.v == VERSION and "v" in env.model_fields_set:
                return env
    try:
        data = loads(body)
        if not isinstance(data, dict):
            raise MalformedMessage(f"body is JSON {type(data).__name__}, not an envelope object")
        if "v" not in data:
            raise UnsupportedVersion(f'envelope has no "v" (version) field; this cloudq reads version {VERSION}')
        version = data["v"]
        if type(version) is not int or version != VERSION:
            raise UnsupportedVersion(
                f"envelope version {version!r} is not supported; this cloudq reads version {VERSION}"
            )
        if key is not None:
            verify(data, key)
        try:
            return EnvelopeModel.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise MalformedMessage(f"invalid envelope: {problems}") from None
    except RecursionError:
        raise MalformedMessage("body is nested too deeply to decode") from None


def _outcome(decoder: Any, body: bytes | str, key: bytes | None) -> tuple[str, Any]:
    try:
        env = decoder(body, key)
    except MalformedMessage as exc:
        return type(exc).__name__, str(exc)
    return "ok", env


def _same_form(value: Any) -> str:
    """Equal values of equal types (5 is not 5.0), NaN equal to itself."""
    return json.dumps(value, sort_keys=True)


def assert_same(body: bytes | str, key: bytes | None = None) -> str:
    kind, got = _outcome(decode, body, key)
    ref_kind, expected = _outcome(reference_decode, body, key)
    if ref_kind != "ok" or kind != "ok":
        assert (kind, got) == (ref_kind, expected), body
        return kind
    assert isinstance(got, Envelope)
    assert _same_form(got.model_dump()) == _same_form(expected.model_dump()), body
    assert got.model_extra == expected.model_extra or _same_form(got.model_extra) == _same_form(expected.model_extra)
    assert got.model_fields_set == expected.model_fields_set
    assert got.encode() == expected.encode() and (key is None or got.encode(key) == expected.encode(key))
    assert (got.chord is None) == (expected.chord is None)
    again = Envelope(**got.model_dump())  # built in Python, as the model would be
    assert _same_form(again.model_dump()) == _same_form(EnvelopeModel(**expected.model_dump()).model_dump())
    return kind


_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
_objects = st.dictionaries(st.text(max_size=3), _junk, max_size=3)
# what each field may hold...
_name = st.text(min_size=1, max_size=6) | st.sampled_from(["a" * 256, "é" * 256, "\U0001f600" * 256])
_optional_name = st.none() | st.text(max_size=6) | st.just("p" * 256)
_epoch = (
    st.none()
    | st.floats(min_value=0, max_value=MAX_EPOCH_S)
    | st.integers(min_value=0, max_value=int(MAX_EPOCH_S))
    | st.sampled_from([0, -0.0, MAX_EPOCH_S, int(MAX_EPOCH_S)])
)
_count = st.integers(min_value=0, max_value=MAX_RETRIES) | st.sampled_from([0, 1, MAX_RETRIES])
_signatures = st.none() | st.lists(_objects, max_size=2)
_parts = st.fixed_dictionaries(
    {"id": _name, "size": _count.filter(bool), "index": _count, "body": _objects},
    optional={"counter": st.none() | st.text(max_size=4) | st.just("c" * 512), "extra": _junk},
)
_VALID: dict[str, st.SearchStrategy[Any]] = {
    "args": st.lists(_junk, max_size=3),
    "kwargs": _objects,
    "eta": _epoch,
    "expires": _epoch,
    "retries": _count,
    "sent_at": _epoch,
    "headers": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    "parent_id": _optional_name,
    "root_id": _optional_name,
    "group": _optional_name,
    "ignore_result": st.none() | st.booleans(),
    "callbacks": _signatures,
    "errbacks": _signatures,
    "chain": _signatures,
    "chord": st.none() | _parts,
    "sig": st.none() | st.text(max_size=4),
}
# ...and what it may nearly hold: the wrong type, one past a bound, a lone surrogate, junk
_STRINGS_NEAR: list[Any] = ["", "a" * 257, "é" * 257, "\U0001f600" * 257, "\ud800", "a\udfff", 7, 1.5, True, [], {}]
_NUMBERS_NEAR: list[Any] = [
    -1, -0.5, -1e-300, MAX_EPOCH_S + 1, 253402300800, 1e300, math.inf, -math.inf, math.nan, True, False, "1",
    1.0, 2.5, MAX_RETRIES + 1, 2**63, 10**40, None, [], {},
]  # fmt: skip
_NEAR: dict[str, list[Any]] = {
    "v": [VERSION + 1, VERSION - 1, True, 1.0, "1", None],
    "id": _STRINGS_NEAR,
    "task": _STRINGS_NEAR,
    "args": [{}, "x", None, 1],
    "kwargs": [[], "x", None, 1],
    "eta": _NUMBERS_NEAR,
    "expires": _NUMBERS_NEAR,
    "retries": _NUMBERS_NEAR,
    "sent_at": _NUMBERS_NEAR,
    "headers": [{"a": 1}, {"a": None}, {"a": ["b"]}, [], None, "x"],
    "parent_id": _STRINGS_NEAR,
    "root_id": _STRINGS_NEAR,
    "group": _STRINGS_NEAR,
    "ignore_result": [0, 1, "true", [], 1.0],
    "callbacks": [{}, [1], ["m.t"], [[]], [None], "x", 5, [{"a": 1}, 2]],
    "errbacks": [{}, [1], [None], "x"],
    "chain": [{}, [[]], ["x"], "x", 5],
    "chord": [[], "x", 1, True, {}],
    "sig": [5, [], {}, True, "\ud800", "é"],
    "\ud800": [1],  # an unknown field whose name is not valid Unicode
}
_PART_NEAR: dict[str, list[Any]] = {
    "id": _STRINGS_NEAR,
    "size": [0, -1, MAX_RETRIES + 1, 1.0, True, "1", None],
    "index": [-1, MAX_RETRIES + 1, 0.0, False, "0", None],
    "body": [[], "x", None, 1],
    "counter": ["c" * 513, 5, [], "\ud800"],
    "\udc00": [1],
}
_MISSING = object()


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope (optional fields left out or valid, unknown fields), then none, one or
    two of its fields (or of its chord part's) nearly valid, removed, or junk."""
    body: dict[str, Any] = {"v": VERSION, "id": draw(_name), "task": draw(_name)}
    for name, values in _VALID.items():
        if draw(st.booleans()):
            body[name] = draw(values)
    body.update(draw(st.dictionaries(st.sampled_from(["trace", "x", "model_config", "__x"]), _junk, max_size=2)))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        part = body.get("chord")
        if isinstance(part, dict) and draw(st.integers(0, 3)) == 0:
            target, near = part, _PART_NEAR
        else:
            target, near = body, _NEAR
        name = draw(st.sampled_from(sorted(near)))
        value = draw(st.sampled_from(near[name]) | st.sampled_from(near[name]) | _junk | st.just(_MISSING))
        if value is _MISSING:
            target.pop(name, None)
        else:
            target[name] = value
    return body


outcomes: Counter[str] = Counter()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=envelopes(), signed=st.integers(0, 3))
def test_the_decoder_and_the_model_agree_on_every_body(body: dict[str, Any], signed: int) -> None:
    key = b"k" if signed >= 2 else None
    if signed == 2:  # a correct signature, so the check reaches the fields
        try:
            body["sig"] = signature(dict(body), b"k")
        except ValueError:  # a lone surrogate: no signature, the check refuses it first
            pass
    raw = json.dumps(body, allow_nan=True)
    outcomes[assert_same(raw, key)] += 1
    assert_same(raw.encode("utf-8", "surrogatepass"), key)


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=40) | st.text(max_size=40) | _junk.map(lambda v: json.dumps(v, allow_nan=True)))
def test_the_decoder_and_the_model_agree_on_junk(body: bytes | str) -> None:
    assert_same(body)


def test_the_property_reaches_both_outcomes() -> None:
    """A differential test that only ever saw refusals would prove nothing."""
    assert assert_same(json.dumps({"v": 1, "id": "t", "task": "m", "eta": 1, "chord": _part()})) == "ok"
    assert assert_same(json.dumps({"v": 1, "id": "t", "task": "m", "retries": 2**31})) == "MalformedMessage"
    assert assert_same(b'{"v": 1, "id": "t", "task": "m", "eta": NaN}') == "MalformedMessage"
    assert assert_same(json.dumps({"v": 1, "id": "t", "task": "m", "headers": {"a": 1}})) == "MalformedMessage"


def _part(**changes: Any) -> dict[str, Any]:
    return {"id": "c1", "size": 2, "index": 1, "body": {"task": "m.t"}, "counter": "chord:c1", **changes}


def test_a_refused_body_reads_as_the_model_words_it() -> None:
    body = json.dumps({"v": 1, "id": "", "task": "m", "retries": -1, "chord": _part(size=0)})
    try:
        decode(body)
    except MalformedMessage as exc:
        assert str(exc).startswith("invalid envelope: id: String should have at least 1 character; retries:")
        assert "chord.size" in str(exc)
    else:
        raise AssertionError("decoded a bad body")


def _errors(build: Any, data: Any) -> list[dict[str, Any]] | None:
    """The errors pydantic(-core) gives for ``data`` (None: accepted), without the docs url."""
    try:
        build(data)
    except ValidationError as exc:
        return [dict(error) for error in exc.errors(include_url=False)]
    return None


def test_the_chord_part_reads_as_the_models() -> None:
    part = ChordPart.model_validate(_part(extra=1))
    model = ChordPartModel.model_validate(_part(extra=1))
    assert part.model_dump(exclude_none=True) == model.model_dump(exclude_none=True)
    assert part.extra == 1 and part.model_extra == {"extra": 1}
    with pytest.raises(ValidationError, match="index"):  # the chord_unlock task's argument, as before
        ChordPart.model_validate(_part(index=-1))


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in _PART_NEAR.items() for v in [*values, _MISSING]])
def test_a_chord_part_built_in_python_is_judged_as_the_model_does(name: str, value: Any) -> None:
    data = _part(**({} if value is _MISSING else {name: value}))
    if value is _MISSING:
        data.pop(name, None)
    assert _errors(ChordPart.model_validate, data) == _errors(ChordPartModel.model_validate, data)


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in _NEAR.items() for v in [*values, _MISSING]])
def test_an_envelope_built_in_python_is_judged_as_the_model_does(name: str, value: Any) -> None:
    """``Envelope(**fields)`` (v defaults to this version) raises the model's ValidationError."""
    data = json.loads(json.dumps(_BASE))
    if value is _MISSING:
        data.pop(name, None)
    else:
        data[name] = value
    assert _errors(lambda d: Envelope(**d), data) == _errors(lambda d: EnvelopeModel(**d), data)


def test_the_published_schema_is_the_models() -> None:
    """Generated from the core schema, the JSON Schema is the one the model generated."""
    from pydantic import BaseModel

    schema, model = json_schema(), EnvelopeModel.model_json_schema()
    assert issubclass(EnvelopeModel, BaseModel) and not issubclass(Envelope, BaseModel)
    assert {k: v for k, v in schema.items() if k not in ("$schema", "$id", "required")} == {
        **{k: v for k, v in model.items() if k != "required"},
        "properties": {**model["properties"], "v": schema["properties"]["v"]},
    }


def test_model_copy_and_dump_behave_as_the_models() -> None:
    body = json.dumps({"v": 1, "id": "t", "task": "m", "x": None, "chord": _part(counter=None)})
    ours, theirs = decode(body), reference_decode(body)
    for update in ({"retries": 3, "eta": 5.0}, {"new": 1}, {"chain": [{"task": "n"}]}):
        a, b = ours.model_copy(update=update), theirs.model_copy(update=update)
        assert a.model_dump() == b.model_dump() and a.model_dump(exclude_none=True) == b.model_dump(exclude_none=True)
        assert a.model_fields_set == b.model_fields_set and a.model_extra == b.model_extra
        assert ours.model_dump() == theirs.model_dump()  # the copy left the original alone
    assert ours == decode(body) and ours != ours.model_copy(update={"retries": 1})
    assert list(Envelope.model_fields) == list(EnvelopeModel.model_fields)
    assert list(ChordPart.model_fields) == list(ChordPartModel.model_fields)


def test_decoding_a_good_body_or_a_bad_one_loads_no_pydantic() -> None:
    script = (
        "import sys\n"
        "from cloudq.envelope import decode, build\n"
        "decode(build('t', 'm.add', [1], {}, sent_at=1.0, extra={'chord': "
        "{'id': 'c', 'size': 1, 'index': 0, 'body': {}}}))\n"
        "print('pydantic' in sys.modules)\n"
        'try:\n    decode(b\'{"v": 1, "id": 5, "task": "m"}\')\nexcept Exception as exc:\n    print(exc)\n'
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False", "invalid envelope: id: Input should be a valid string", "False"]


_BASE = {"v": VERSION, "id": "t1", "task": "m.add", "chord": {"id": "c1", "size": 2, "index": 1, "body": {}}}


def _near_cases() -> list[tuple[str, str, Any]]:
    return [("", name, value) for name, values in _NEAR.items() for value in [*values, _MISSING]] + [
        ("chord", name, value) for name, values in _PART_NEAR.items() for value in [*values, _MISSING]
    ]


@pytest.mark.parametrize(("part", "name", "value"), _near_cases())
@pytest.mark.parametrize("key", [None, b"k"])
def test_each_near_value_alone_is_judged_as_the_model_does(part: str, name: str, value: Any, key: bytes | None) -> None:
    """Every boundary on its own, the rest of the body valid: no random draw needed to reach it."""
    body = json.loads(json.dumps(_BASE))
    target = body["chord"] if part else body
    if value is _MISSING:
        target.pop(name, None)
    else:
        target[name] = value
    if key is not None:
        try:
            body["sig"] = signature(dict(body), key)
        except UnicodeEncodeError:  # a lone surrogate: no signature, the check refuses it first
            body["sig"] = "x"
    assert_same(json.dumps(body, allow_nan=True), key)


def test_the_property_saw_bodies_accepted_and_refused() -> None:
    """Run after the property (file order): it must have reached both outcomes, or it proved nothing."""
    if outcomes:  # the property ran in this session
        assert outcomes["ok"] > 200 and outcomes["MalformedMessage"] > 200, outcomes
