import json
from pathlib import Path

import jsonschema
import pytest

import cloudq
from cloudq.envelope import Envelope, decode, json_schema
from cloudq.errors import MalformedMessage, SignatureInvalid, UnsupportedVersion

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


@pytest.mark.parametrize("version", [2, "1", None])
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
