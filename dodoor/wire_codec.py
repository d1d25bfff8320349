"""The wire codec: the message registry and the one encode/decode seam.

Every message is a frozen dataclass registered under a type name with
:func:`message` (the classes live in the ``dodoor.wire_*`` modules by who speaks
them; ``dodoor.wire`` names them all). On the wire a message is a msgpack map
``{"v": SCHEMA_VERSION, "type": name, "body": {...}}`` sent as
``Content-Type: application/msgpack``. Numeric vectors and matrices travel as
raw little-endian float64 (``[shape, bytes]``), never pickles. A class that defines
``to_body()`` and the classmethod ``from_body(body)`` lays out its own body (a batch of
tasks as columns, ``EnqueueBatch``); ``from_body`` raises ValidationError or ValueError,
which decode turns into a DecodeError like any other. Any failure to
decode — bad msgpack, wrong version, unknown type, missing or mistyped field —
raises :class:`~dodoor.errors.DecodeError`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

import msgpack
import numpy as np

from dodoor.errors import DecodeError, ValidationError
from dodoor.resources import Task
from dodoor.validation import parse_task

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/msgpack"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_REGISTRY: dict[str, type] = {}
# Per message class, its field names, read once: every report and status answer encodes
# a message per task, and dataclasses.fields() per object was a third of an agent's CPU.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
# Per message class, its fields left out of the body at their default (omitted_at_default)
_OMITTED: dict[type, tuple[tuple[str, Any], ...]] = {}
OMIT_DEFAULT = "dodoor.wire.omit_default"
# Message classes with a body layout of their own (``to_body``/``from_body``): a batch of
# tasks travels as columns, which the per-field walk below would take apart task by task
_OWN_BODY: set[type] = set()
# values that travel as they are; checked by exact type first, the common case
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def message(name: str):
    """Class decorator: a frozen dataclass message registered as ``name``."""

    def wrap(cls: type) -> type:
        cls = dataclass(frozen=True)(cls)
        cls.TYPE = name
        _REGISTRY[name] = cls
        _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
        omit = tuple((f.name, f.default) for f in dataclasses.fields(cls)
                     if f.metadata.get(OMIT_DEFAULT))
        if omit:
            _OMITTED[cls] = omit
        if hasattr(cls, "to_body") and hasattr(cls, "from_body"):
            _OWN_BODY.add(cls)
        return cls

    return wrap


def omitted_at_default(default: Any) -> Any:
    """A field left out of the encoded body while it holds ``default`` (decoding gives the
    default back): a field added later costs its messages nothing until it is used, and
    a peer that predates it still reads them."""
    return field(default=default, metadata={OMIT_DEFAULT: True})


def encode(msg: Any) -> bytes:
    """Serialize a registered message."""
    name = getattr(type(msg), "TYPE", None)
    if name not in _REGISTRY:
        raise TypeError(f"not a wire message: {type(msg).__name__}")
    return msgpack.packb({"v": SCHEMA_VERSION, "type": name, "body": _body(msg)},
                         use_bin_type=True)


def _body(msg: Any) -> dict:
    kind = type(msg)
    if kind in _OWN_BODY:
        return msg.to_body()
    body = {n: _to_wire(getattr(msg, n)) for n in _FIELD_NAMES[kind]}
    for name, default in _OMITTED.get(kind, ()):
        value = getattr(msg, name)
        # the field's own value (a tuple travels as a list); an array field's default is
        # None, and an array must not be compared with ==
        at_default = value is None if default is None else value == default
        if at_default:
            del body[name]
    return body


def decode(data: bytes, expect: type | None = None) -> Any:
    """Parse bytes into a message; ``expect`` restricts the accepted type."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        outer = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE_BYTES)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"malformed msgpack: {exc}") from exc
    if not isinstance(outer, dict) or set(outer) != {"v", "type", "body"}:
        raise DecodeError("expected a map with keys v, type, body")
    if outer["v"] != SCHEMA_VERSION:
        raise DecodeError(f"unsupported schema version {outer['v']!r}, expected {SCHEMA_VERSION}")
    cls = _REGISTRY.get(outer["type"]) if isinstance(outer["type"], str) else None
    if cls is None:
        raise DecodeError(f"unknown message type {outer['type']!r}")
    if expect is not None and cls is not expect:
        raise DecodeError(f"expected {expect.TYPE!r}, got {cls.TYPE!r}")
    body = outer["body"]
    if not isinstance(body, dict):
        raise DecodeError(f"{cls.TYPE}: body must be a map")
    return _build(cls, body)


def _to_wire(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value, dtype="<f8")
        return [list(arr.shape), arr.tobytes()]
    if isinstance(value, Task):
        return value.to_dict()
    if kind in _FIELD_NAMES:  # a message nested in another travels as its body map
        return _body(value)
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


@functools.cache
def _schema(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type hint, optional) of each field of a message class, resolved once
    (``typing.get_type_hints`` per decoded message cost as much as the rest of it)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name], f.default is not dataclasses.MISSING
                  or f.default_factory is not dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


def _build(cls: type, body: dict) -> Any:
    if cls in _OWN_BODY:
        # its own layout, checked by the class; every failure is still a DecodeError
        try:
            return cls.from_body(body)
        except ValidationError as exc:
            raise DecodeError(f"{cls.TYPE}.{exc.field}: {exc.reason}") from exc
        except ValueError as exc:
            raise DecodeError(f"{cls.TYPE}: {exc}") from exc
    kwargs: dict[str, Any] = {}
    for name, hint, optional in _schema(cls):
        if name not in body:
            if optional:
                continue
            raise DecodeError(f"{cls.TYPE}: missing field {name!r}")
        kwargs[name] = _from_wire(cls.TYPE, name, hint, body[name])
    if len(kwargs) != len(body):
        extra = set(body) - set(_FIELD_NAMES[cls])
        raise DecodeError(f"{cls.TYPE}: unknown field {sorted(map(str, extra))[0]!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a message's own check of its fields together
        raise DecodeError(f"{cls.TYPE}: {exc}") from exc


@functools.cache
def _shape(hint: Any) -> tuple[bool, Any, Any, tuple]:
    """(may be None, the hint without None, its origin, its args), worked out once per hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    nullable = False
    if origin is typing.Union or origin is types.UnionType:
        nullable = type(None) in args
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    return nullable, hint, origin, args


def _from_wire(kind: str, name: str, hint: Any, value: Any) -> Any:
    nullable, hint, origin, args = _shape(hint)
    if value is None and nullable:
        return None
    # the plain fields first: they are most of every message
    if hint is str or hint is int:
        if type(value) is hint:
            return value
        if isinstance(value, bool) or not isinstance(value, hint):
            raise DecodeError(f"{kind}.{name}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(f"{kind}.{name}: expected a number, got {type(value).__name__}")
        return float(value)
    where = f"{kind}.{name}"
    if hint is np.ndarray:
        return _array(where, value)
    if hint is Task:
        try:
            return parse_task(value, where=f"{where}.")
        except ValidationError as exc:
            raise DecodeError(f"{exc.field}: {exc.reason}") from exc
    if origin is tuple and args and args[0] is Task:
        if not isinstance(value, list):
            raise DecodeError(f"{where}: expected a list of tasks")
        return tuple(_from_wire(kind, f"{name}[{i}]", Task, v) for i, v in enumerate(value))
    if origin is tuple and args and getattr(args[0], "TYPE", None) in _REGISTRY:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise DecodeError(f"{where}: expected a list of {args[0].TYPE} maps")
        return tuple(_build(args[0], v) for v in value)
    if origin is tuple and args and args[0] is float:
        if not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise DecodeError(f"{where}: expected a list of numbers")
        return tuple(float(v) for v in value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DecodeError(f"{where}: expected a list of strings")
        return tuple(value)
    if origin is Mapping:
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected a map")
        return value
    if hint is bool and not isinstance(value, bool):
        raise DecodeError(f"{where}: expected bool, got {type(value).__name__}")
    return value


def _array(where: str, value: Any) -> np.ndarray:
    if (
        not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], list)
        or not isinstance(value[1], bytes)
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in value[0])
    ):
        raise DecodeError(f"{where}: expected [shape, float64 bytes]")
    shape, raw = value
    expected = 8 * int(np.prod(shape, dtype=np.int64)) if shape else 8
    if len(shape) > 2 or len(raw) != expected:
        raise DecodeError(f"{where}: {len(raw)} bytes do not match shape {shape}")
    return np.frombuffer(raw, dtype="<f8").reshape(shape).copy()
