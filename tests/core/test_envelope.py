import json
from pathlib import Path

import jsonschema
import pytest

import cloudq
from cloudq.envelope import VERSION, Envelope, build, decode, json_schema, peek, peek_id, signature
from cloudq.errors import InvalidOptions, MalformedMessage, SignatureInvalid, UnsupportedVersion

SCHEMA_FILE = Path(cloudq.__file__).parent / "envelope.schema.json"


def test_round_trip():
    env = Envelope(id="t1", task="m.add", args=[1, "x"], kwargs={"k": [1.5, None]}, eta=12.5)
    assert decode(env.encode()) == env


def test_unknown_fields_from_newer_producers_are_kept():
    body = json.dumps({"v": 1, "id": "t1", "task": "m.add", "trace": {"span": "abc"}})
    env = decode(body)
    assert env.model_extra == {"trace": {"span": "abc"}}
    assert json.loads(env.encode())["trace"] == {"span": "abc"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an envelope object"),
        (b'{"v": 1, "task": "m.add"}', "id"),
        (b'{"v": 1, "id": "t", "task": "m.add", "args": {"a": 1}}', "args"),
        (b'{"v": 1, "id": "t", "task": "m.add", "retries": -1}', "retries"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body, message):
    with pytest.raises(MalformedMessage, match=message):
        decode(body)


@pytest.mark.parametrize("version", [VERSION - 1, VERSION + 1, str(VERSION), None, True])
def test_other_versions_are_refused(version):
    with pytest.raises(UnsupportedVersion, match="version"):
        decode(json.dumps({"v": version, "id": "t", "task": "x"}))


def test_signed_envelopes_verify_and_tampering_is_detected():
    key = b"secret"
    body = Envelope(id="t1", task="m.add", args=[1, 2]).encode(key)
    assert decode(body, key).args == [1, 2]
    tampered = body.replace(b"[1,2]", b"[1,3]")
    with pytest.raises(SignatureInvalid, match="altered"):
        decode(tampered, key)
    with pytest.raises(SignatureInvalid, match="unsigned"):
        decode(Envelope(id="t1", task="m.add").encode(), key)
    with pytest.raises(SignatureInvalid):
        decode(body, b"other key")


def test_lineage_and_ignore_result_are_signed_when_present_and_old_signatures_still_verify():
    key = b"k"
    body = build("t1", "m.add", [1], {}, sent_at=1.0, key=key, extra={"parent_id": "p", "ignore_result": True})
    env = decode(body, key)
    assert (env.parent_id, env.ignore_result, env.root_id) == ("p", True, None)
    tampered = json.loads(body)
    tampered["parent_id"] = "other"
    with pytest.raises(SignatureInvalid):
        decode(json.dumps(tampered), key)
    added = json.loads(build("t1", "m.add", [1], {}, sent_at=1.0, key=key))
    added["ignore_result"] = True  # a field the signer did not send cannot be slipped in
    with pytest.raises(SignatureInvalid):
        decode(json.dumps(added), key)
    assert decode(build("t1", "m.add", [1], {}, sent_at=1.0, key=key), key).parent_id is None


def test_published_schema_file_matches_the_model():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


def test_schema_accepts_what_decode_accepts_and_rejects_bad_types():
    schema = json.loads(SCHEMA_FILE.read_text())
    good = json.loads(Envelope(id="t1", task="m.add", args=[1], kwargs={"a": 2}, eta=1.0).encode(b"k"))
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "args": "nope"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 1, "task": "x"}, schema)


_MISSING = object()
# for each field, values around what the model allows (integral floats such as 1.0 are left out:
# JSON Schema cannot tell them from integers)
_VARIANTS: dict[str, list[object]] = {
    "v": [VERSION, VERSION - 1, VERSION + 1, str(VERSION), True, None, 1.5, _MISSING],
    "id": ["x", "", 7, None, "a" * 256, "a" * 257, _MISSING],
    "task": ["m.t", "", 7, None, "t" * 257, _MISSING],
    "args": [[], [1, "x", None], {}, "x", None],
    "kwargs": [{}, {"a": [1]}, [], "x", None],
    "eta": [None, 1.5, 2, "1.5", True, -1, 253402300799, 253402300800, float("inf")],
    "expires": [None, 1.5, "x", False, -0.5, 1e300],
    "retries": [0, 3, -1, 1.5, "2", None, True, 2**31 - 1, 2**31, 10**40],
    "sent_at": [None, 1, "x", 1e999],
    "headers": [{}, {"a": "b"}, {"a": 1}, [], None],
    "sig": [None, "ab", 5],
    "parent_id": [None, "p1", 7, "p" * 257],
    "root_id": [None, "r1", [], "r" * 257],
    "group": [None, "g1", 1.5],
    "ignore_result": [None, True, False, "true", 1],
    "chord": [
        None,
        {"id": "c1", "size": 2, "index": 1, "body": {"task": "m.t"}, "counter": "chord:c1"},
        {"id": "c1", "size": 0, "index": 0, "body": {}},
        {"id": "c1", "size": 2, "index": -1, "body": {}},
        {"id": "c1", "size": 2, "index": 0},
        [],
        "x",
    ],
    "callbacks": [None, [], [{"task": "m.t", "args": [1]}], {"task": "m.t"}, ["m.t"], "x"],
    "errbacks": [None, [{"task": "m.t"}], [1], {}],
    "chain": [None, [{"task": "m.t", "options": {"task_id": "c1"}}], [[]], "x", 5],
    "trace": [_MISSING, {"span": 1}],  # an unknown field from a newer producer
}


def _cases() -> list[tuple[str, object]]:
    assert set(Envelope.model_fields) <= set(_VARIANTS), "a new envelope field needs variants here"
    return [(name, value) for name, values in _VARIANTS.items() for value in values]


@pytest.mark.parametrize(("field", "value"), _cases())
def test_the_schema_accepts_exactly_what_decode_reads(field, value):
    body = {"v": VERSION, "id": "t1", "task": "m.add"}
    if value is _MISSING:
        body.pop(field, None)
    else:
        body[field] = value
    schema_ok = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).is_valid(body)
    try:
        decode(json.dumps(body))
        decoded = True
    except MalformedMessage:
        decoded = False
    assert schema_ok == decoded, f"schema says {schema_ok}, decode says {decoded} for {field}={value!r}"


def test_decode_with_or_without_a_key_reads_the_same_versions():
    key = b"k"
    body = {"id": "t1", "task": "m.add"}
    with pytest.raises(UnsupportedVersion, match='no "v"'):
        decode(json.dumps(body))
    with pytest.raises(UnsupportedVersion, match='no "v"'):
        decode(json.dumps(body), key)


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("key", [None, b"k"])
@pytest.mark.parametrize(
    "body",
    [DEEP, b'{"v": 1, "id": "t", "task": "m.add", "args": ' + DEEP + b"}"],
    ids=["bare", "in-args"],
)
def test_nesting_beyond_the_parser_limit_is_malformed_not_a_recursion_error(body, key):
    with pytest.raises(MalformedMessage, match="nested too deeply"):
        decode(body, key)
    assert peek(body) == {} and peek_id(body) is None  # log lines and failure records never raise


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("eta", b"1e999"),
        ("eta", b"-1e999"),
        ("eta", b"NaN"),
        ("eta", b"Infinity"),
        ("eta", b"253402300800"),  # 10000-01-01: past what datetime and the stores can hold
        ("expires", b"NaN"),
        ("expires", b"1e999"),
        ("sent_at", b"-Infinity"),
        ("retries", b"10000000000000000000000000000000000000000"),
        ("retries", b"2147483648"),
    ],
)
@pytest.mark.parametrize("key", [None, b"k"])
def test_non_finite_and_out_of_range_numbers_are_malformed(field, raw, key):
    head = b'{"v": 1, "id": "t", "task": "m.add", "' + field.encode() + b'": ' + raw
    data = {"v": 1, "id": "t", "task": "m.add", field: json.loads(raw)}
    sig = b', "sig": "' + signature(data, key).encode() + b'"' if key else b""
    with pytest.raises(MalformedMessage, match=field):
        decode(head + sig + b"}", key)


@pytest.mark.parametrize(
    "times", [{"eta": float("inf")}, {"eta": float("nan")}, {"expires": 1e300}, {"expires": -1.0}, {"eta": "soon"}]
)
def test_build_refuses_times_no_worker_could_read(times):
    with pytest.raises(InvalidOptions, match=next(iter(times))):
        build("t", "m.add", [], {}, sent_at=1.0, **times)


def test_the_signature_covers_headers():
    key = b"k"
    body = json.loads(build("t", "m.add", [1], {}, sent_at=1.0, headers={"tenant": "a"}, key=key))
    assert body["sig"].startswith("v2:")
    assert decode(json.dumps(body), key).headers == {"tenant": "a"}
    for forged in ({"tenant": "b"}, {}, {"tenant": "a", "role": "admin"}):
        with pytest.raises(SignatureInvalid, match="altered"):
            decode(json.dumps({**body, "headers": forged}), key)


def test_messages_signed_by_the_first_scheme_stay_readable_during_a_rollout():
    """The first scheme signed a bare hex over the fields without headers: a worker that was
    upgraded still runs what producers signed before the upgrade (and still detects tampering)."""
    import hashlib
    import hmac

    key = b"k"
    body = {"v": 1, "id": "t", "task": "m.add", "args": [1, 2], "kwargs": {}, "headers": {"h": "1"}}
    signed = {n: body.get(n) for n in ("v", "id", "task", "args", "kwargs", "eta", "expires", "retries")}
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body["sig"] = hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
    assert decode(json.dumps(body), key).args == [1, 2]
    with pytest.raises(SignatureInvalid, match="altered"):
        decode(json.dumps({**body, "args": [1, 3]}), key)


@pytest.mark.parametrize(
    "raw",
    [
        '{"v":1,"id":"a","task":"t","args":[],"kwargs":{},"sig":"v2:\u00e9\u00e9"}',  # a non-ASCII signature
        '{"v":1,"id":"a","task":"t","args":["\\ud800"],"kwargs":{},"sig":"v2:00"}',  # a lone surrogate, signed
    ],
    ids=["non-ascii-sig", "lone-surrogate"],
)
def test_a_signature_that_cannot_be_compared_is_invalid_not_an_internal_error(raw: str) -> None:
    """``hmac.compare_digest`` raises TypeError on a non-ASCII str and a lone surrogate cannot be
    encoded to sign: both are SignatureInvalid (a dead letter with the reason), never a crash."""
    with pytest.raises(SignatureInvalid):
        decode(raw.encode("utf-8", "surrogatepass"), b"k" * 32)
