"""The envelope's schema: one pydantic-core schema that ``decode`` checks every body against and
``json_schema`` publishes.

Written as a core schema (``pydantic_core.core_schema``) over two plain classes instead of pydantic
models: pydantic-core validates it in one pass as fast as a model would, but the worker, the Lambda
handler and the push handler never import pydantic (~200 ms of a cold start); only
``json_schema()`` does, to generate the published file from this same schema. Split from
envelope.py (encoding, signing, peeking) so producers import neither.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic_core import SchemaSerializer, SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from .envelope import MAX_EPOCH_S, MAX_RETRIES, VERSION, encode_dict, loads, verify
from .errors import MalformedMessage, UnsupportedVersion

MAX_ID = 256
MAX_COUNTER = 512


class _Model:
    """What pydantic's BaseModel offers on the read side, over the attributes pydantic-core sets
    (``__dict__`` the fields, ``__pydantic_extra__`` the unknown ones kept, ``__pydantic_fields_set__``).
    """

    __slots__ = ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__")
    # the published schema's title and extra (read by pydantic's GenerateJsonSchema)
    model_config: ClassVar[dict[str, Any]]
    model_fields: ClassVar[tuple[str, ...]]  # the fields' names, in the schema's order
    __pydantic_validator__: ClassVar[SchemaValidator]
    __pydantic_serializer__: ClassVar[SchemaSerializer]
    __pydantic_fields_set__: set[str]
    __pydantic_extra__: dict[str, Any] | None
    __pydantic_private__: Any

    def __init__(self, **data: Any) -> None:
        """Checked as a decoded body is (a pydantic_core.ValidationError when it is refused)."""
        self.__pydantic_validator__.validate_python(data, self_instance=self)

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        return cls.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]

    @property
    def model_extra(self) -> dict[str, Any] | None:
        return self.__pydantic_extra__

    @property
    def model_fields_set(self) -> set[str]:
        return self.__pydantic_fields_set__

    def __getattr__(self, name: str) -> Any:  # an unknown field, read as an attribute (as pydantic does)
        try:
            return object.__getattribute__(self, "__pydantic_extra__")[name]
        except (KeyError, TypeError, AttributeError):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def model_dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
        return self.__pydantic_serializer__.to_python(self, exclude_none=exclude_none)  # type: ignore[no-any-return]

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self:
        """A shallow copy with ``update`` set unchecked, unknown names as extras (as pydantic's)."""
        copied = object.__new__(type(self))
        object.__setattr__(copied, "__dict__", dict(self.__dict__))
        extra = self.__pydantic_extra__
        object.__setattr__(copied, "__pydantic_extra__", None if extra is None else dict(extra))
        object.__setattr__(copied, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))
        object.__setattr__(copied, "__pydantic_private__", None)
        for name, value in (update or {}).items():
            if name in self.model_fields:
                copied.__dict__[name] = value
            else:
                if copied.__pydantic_extra__ is None:
                    object.__setattr__(copied, "__pydantic_extra__", {})
                copied.__pydantic_extra__[name] = value  # type: ignore[index]
            copied.__pydantic_fields_set__.add(name)
        return copied

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Model)
        return self.__dict__ == other.__dict__ and self.__pydantic_extra__ == other.__pydantic_extra__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" for name, value in (*self.__dict__.items(), *(self.model_extra or {}).items())
        )
        return f"{type(self).__name__}({shown})"


def _field(schema: cs.CoreSchema, description: str | None = None) -> cs.ModelField:
    return cs.model_field(schema, metadata={"pydantic_js_updates": {"description": description}} if description else {})


def _optional(schema: cs.CoreSchema, description: str) -> cs.ModelField:
    return _field(cs.with_default_schema(cs.nullable_schema(schema), default=None), description)


def _epoch(description: str) -> cs.ModelField:
    return _optional(cs.float_schema(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False), description)


def _id(description: str) -> cs.ModelField:
    return _field(cs.str_schema(min_length=1, max_length=MAX_ID), description)


def _object() -> cs.CoreSchema:
    return cs.dict_schema(cs.str_schema(), cs.any_schema())


def _signatures(description: str) -> cs.ModelField:
    return _optional(cs.list_schema(_object()), description)


def _model(cls: type[_Model], title: str, fields: dict[str, cs.ModelField]) -> cs.ModelSchema:
    cls.model_config = {"title": title, "extra": "allow", "strict": True}
    cls.model_fields = tuple(fields)
    config = cs.CoreConfig(title=title, extra_fields_behavior="allow", strict=True)
    inner = cs.model_fields_schema(fields, model_name=cls.__name__, extra_behavior="allow")
    return cs.model_schema(cls, inner, config=config, ref=f"{__name__}.{cls.__name__}")


class ChordPart(_Model):
    """A chord header task's part: the chord's id (its header's group id), how many header tasks
    it has and which one this is, the body to send when all have ended, and the result store
    counter they count on (None: the store has no counter and a ``cloudq.chord_unlock`` task polls)."""

    __slots__ = ()
    id: str
    size: int
    index: int
    body: dict[str, Any]
    counter: str | None


CHORD_PART_SCHEMA = _model(
    ChordPart,
    "chord part",
    {
        "id": _id("chord id: the header's group id"),
        "size": _field(cs.int_schema(ge=1, le=MAX_RETRIES), "number of header tasks"),
        "index": _field(cs.int_schema(ge=0, le=MAX_RETRIES), "this task's place in the header"),
        "body": _field(_object(), "the body's signature (its JSON form)"),
        "counter": _optional(cs.str_schema(max_length=MAX_COUNTER), "the result store counter of the chord"),
    },
)


class Envelope(_Model):
    """Version 1 of the cloudq message envelope."""

    __slots__ = ()
    v: int
    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    eta: float | None
    expires: float | None
    retries: int
    sent_at: float | None
    headers: dict[str, str]
    parent_id: str | None
    root_id: str | None
    group: str | None
    ignore_result: bool | None
    callbacks: list[dict[str, Any]] | None
    errbacks: list[dict[str, Any]] | None
    chain: list[dict[str, Any]] | None
    chord: ChordPart | None
    sig: str | None

    def encode(self, key: bytes | None = None) -> bytes:
        return encode_dict(self.model_dump(exclude_none=True), key)


ENVELOPE_SCHEMA = _model(
    Envelope,
    "cloudq task envelope v1",
    {
        "v": _field(cs.with_default_schema(cs.int_schema(strict=True), default=VERSION), "envelope version"),
        "id": _id("task id"),
        "task": _id("registered task name"),
        "args": _field(cs.with_default_schema(cs.list_schema(cs.any_schema()), default_factory=list)),
        "kwargs": _field(cs.with_default_schema(_object(), default_factory=dict)),
        "eta": _epoch("epoch seconds before which the task must not run"),
        "expires": _epoch("epoch seconds after which the task is not run"),
        "retries": _field(
            cs.with_default_schema(cs.int_schema(ge=0, le=MAX_RETRIES), default=0),
            "attempts already spent before this message was sent",
        ),
        "sent_at": _epoch("epoch seconds when first sent"),
        "headers": _field(
            cs.with_default_schema(cs.dict_schema(cs.str_schema(), cs.str_schema()), default_factory=dict)
        ),
        "parent_id": _optional(cs.str_schema(max_length=MAX_ID), "id of the task that sent this one"),
        "root_id": _optional(cs.str_schema(max_length=MAX_ID), "id of the first task of the chain of senders"),
        "group": _optional(cs.str_schema(max_length=MAX_ID), "id of the group this task belongs to"),
        "ignore_result": _optional(cs.bool_schema(), "this call's ignore_result (else the task's)"),
        "callbacks": _signatures("signature dicts sent when the task succeeds, its result prepended (link)"),
        "errbacks": _signatures("signature dicts called when the task fails for good (link_error)"),
        "chain": _signatures("the remaining steps of its chain as signature dicts, the next step LAST"),
        "chord": _optional(
            CHORD_PART_SCHEMA,
            "on a chord header task: its part in the chord (the count that completes it sends the body)",
        ),
        "sig": _optional(
            cs.str_schema(),
            "HMAC-SHA256 when signing is on: 'v2:<hex>' over every field the task sees; "
            "a bare hex (the first scheme, without headers) is still read",
        ),
    },
)

for _cls, _schema in ((ChordPart, CHORD_PART_SCHEMA), (Envelope, ENVELOPE_SCHEMA)):
    _cls.__pydantic_validator__ = SchemaValidator(_schema)
    _cls.__pydantic_serializer__ = SchemaSerializer(_schema)
_validate_json = Envelope.__pydantic_validator__.validate_json


def decode(body: bytes | str, key: bytes | None = None) -> Envelope:
    """Parse and check a message body; every failure is a MalformedMessage with the reason."""
    if key is None:  # fast path: one pass in pydantic-core; the slow path explains failures
        try:
            env: Envelope = _validate_json(body)
        except ValidationError:
            pass
        except RecursionError:
            raise MalformedMessage("body is nested too deeply to decode") from None
        else:
            if env.v == VERSION and "v" in env.__pydantic_fields_set__:
                return env
    try:
        return _decode(body, key)
    except RecursionError:  # e.g. signing or validating a body nested just under the parser's limit
        raise MalformedMessage("body is nested too deeply to decode") from None


def _decode(body: bytes | str, key: bytes | None) -> Envelope:
    data = loads(body)
    if not isinstance(data, dict):
        raise MalformedMessage(f"body is JSON {type(data).__name__}, not an envelope object")
    if "v" not in data:
        raise UnsupportedVersion(f'envelope has no "v" (version) field; this cloudq reads version {VERSION}')
    version = data["v"]
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        raise UnsupportedVersion(f"envelope version {version!r} is not supported; this cloudq reads version {VERSION}")
    if key is not None:
        verify(data, key)
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)  # the url would import pydantic (for its version)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)
        raise MalformedMessage(f"invalid envelope: {problems}") from None


def json_schema() -> dict[str, Any]:
    """The published JSON Schema, generated by pydantic from the schema ``decode`` checks: exactly
    what it accepts (``v`` is required and must be this version, though it defaults to it for
    envelopes built in Python)."""
    from pydantic.json_schema import GenerateJsonSchema

    schema = GenerateJsonSchema().generate(ENVELOPE_SCHEMA)
    schema["properties"]["v"] = {"const": VERSION, "description": "envelope version", "type": "integer"}
    schema["required"] = ["v", *(name for name in schema["required"] if name != "v")]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://cloudq.dev/schemas/envelope-v1.json"
    return schema
