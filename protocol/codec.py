"""Frames to bytes and back: msgpack maps, multipart envelopes. No pickle, ever.

`encode`/`decode` turn one frame into one msgpack payload; `to_multipart` /
`from_multipart` add the topic part (the kind) used on the PUB socket so that a
subscriber on a slow link can filter by kind.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

import msgpack

from .frames import FRAME_TYPES, PROTOCOL_MAJOR, PROTOCOL_MINOR, F32Array, Frame

ENVELOPE_FIELDS = ("v", "kind", "run_id", "seq", "step", "wall_time")


class ProtocolError(ValueError):
    """A payload that is not a lorascope frame (not msgpack, not a map, bad field)."""


class ProtocolVersionError(ProtocolError):
    """A frame from a newer major version of the protocol: refuse rather than misread it."""


# --------------------------------------------------------------------------- encode
def _to_wire(value: Any) -> Any:
    if isinstance(value, F32Array):
        return value.to_wire()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return value  # msgpack carries NaN/inf as IEEE doubles
    return value


def frame_to_dict(frame: Frame) -> dict[str, Any]:
    """The wire map of a frame, envelope first."""
    body = _to_wire(frame)
    out: dict[str, Any] = {
        "v": [PROTOCOL_MAJOR, PROTOCOL_MINOR],
        "kind": frame.kind,
    }
    out.update(body)
    return out


def encode(frame: Frame) -> bytes:
    """One frame as one msgpack payload."""
    return msgpack.packb(frame_to_dict(frame), use_bin_type=True)


def to_multipart(frame: Frame, payload: bytes | None = None) -> list[bytes]:
    """[topic=kind, payload]: what travels on the PUB socket."""
    return [frame.kind.encode("ascii"), payload if payload is not None else encode(frame)]


# --------------------------------------------------------------------------- decode
def check_version(v: Any, where: str = "frame") -> None:
    """Refuse a newer major version with a message naming both versions."""
    if not isinstance(v, (list, tuple)) or len(v) < 1 or not isinstance(v[0], int):
        raise ProtocolError(f"{where}: missing or malformed protocol version {v!r}")
    if v[0] > PROTOCOL_MAJOR:
        minor = v[1] if len(v) > 1 else 0
        raise ProtocolVersionError(
            f"{where} uses lorascope protocol {v[0]}.{minor}, but this lorascope reads "
            f"protocol {PROTOCOL_MAJOR}.x (it is {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}); upgrade lorascope"
        )


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _from_wire(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_wire(args[0], value) if len(args) == 1 else value
    if tp is F32Array:
        return F32Array.from_wire(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ProtocolError(f"{tp.__name__}: expected a map, got {type(value).__name__}")
        return _build(tp, value)
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return [_from_wire(inner, v) for v in value]
    if origin is dict:
        args = typing.get_args(tp)
        inner = args[1] if len(args) == 2 else Any
        return {k: _from_wire(inner, v) for k, v in value.items()}
    if origin is tuple:
        return tuple(value)
    if tp is float and isinstance(value, int):
        return float(value)
    if tp is bytes and isinstance(value, str):
        return value.encode("utf-8")
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    names = _field_names(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            continue  # unknown field from a newer minor version: skip it
        try:
            kwargs[key] = _from_wire(hints[key], value)
        except (TypeError, ValueError, KeyError) as exc:
            raise ProtocolError(f"{cls.__name__}.{key}: {exc}") from exc
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(f"{cls.__name__}: {exc}") from exc


def dict_to_frame(data: Any) -> Frame | None:
    """Typed frame from a decoded map; None for a kind this version does not know."""
    if not isinstance(data, dict):
        raise ProtocolError(f"frame is a {type(data).__name__}, not a map")
    check_version(data.get("v"), where=f"frame seq={data.get('seq')!r}")
    cls = FRAME_TYPES.get(data.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        return None
    return _build(cls, data)


def decode(payload: bytes) -> Frame | None:
    """One msgpack payload to a typed frame; None for an unknown kind (skip it)."""
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"payload is not msgpack: {exc}") from exc
    return dict_to_frame(data)


def from_multipart(parts: list[bytes]) -> Frame | None:
    """Inverse of `to_multipart`; the payload is the last part."""
    if len(parts) < 2:
        raise ProtocolError(f"expected [topic, payload], got {len(parts)} part(s)")
    return decode(parts[-1])
