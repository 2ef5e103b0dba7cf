"""Every frame kind survives encode/decode; unknown kinds and fields are skipped; newer majors refused."""

from __future__ import annotations

import math

import msgpack
import pytest
from protocol_samples import sample_frames

from lorascope.protocol.codec import ProtocolError, ProtocolVersionError, decode, encode, from_multipart, to_multipart
from lorascope.protocol.frames import FRAME_TYPES, PROTOCOL_MAJOR, F32Array, StepMetrics


def _same(a, b) -> bool:
    """Equality that treats NaN cells of float32 arrays as equal (NaN marks 'not adapted')."""
    if isinstance(a, F32Array):
        return a.shape == b.shape and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), b.values()))
    return a == b


def test_samples_cover_every_kind():
    assert sorted(f.kind for f in sample_frames()) == sorted(FRAME_TYPES)


@pytest.mark.parametrize("frame", sample_frames(), ids=lambda f: f.kind)
def test_round_trip(frame):
    back = decode(encode(frame))
    assert type(back) is type(frame)
    for name in frame.__dataclass_fields__:
        assert _same(getattr(back, name), getattr(frame, name)), name
    topic, payload = to_multipart(frame)
    assert topic == frame.kind.encode()
    again = from_multipart([topic, payload])
    assert type(again) is type(frame) and again.seq == frame.seq


def test_weight_delta_nan_cells_survive():
    frame = next(f for f in sample_frames() if f.kind == "weight_delta")
    cells = decode(encode(frame)).absolute.values()
    assert cells[:3] == [1.0, 2.0, 3.0] and math.isnan(cells[3])


def test_arrays_travel_as_raw_float32_bytes():
    frame = next(f for f in sample_frames() if f.kind == "volatility")
    wire = msgpack.unpackb(encode(frame), raw=False)
    assert wire["losses"] == {"dtype": "<f4", "shape": [2], "data": b"\x00\x00\xc0\x3f\x00\x00\x20\x40"}


def test_unknown_kind_is_skipped():
    payload = msgpack.packb({"v": [PROTOCOL_MAJOR, 9], "kind": "hologram", "run_id": "r", "seq": 1, "step": 0, "wall_time": 0.0})
    assert decode(payload) is None


def test_unknown_field_is_skipped():
    wire = msgpack.unpackb(encode(StepMetrics(run_id="r", seq=1, loss=1.5)), raw=False)
    wire["v"] = [PROTOCOL_MAJOR, 99]
    wire["curvature"] = {"a": [1, 2]}
    back = decode(msgpack.packb(wire))
    assert isinstance(back, StepMetrics) and back.loss == 1.5 and not hasattr(back, "curvature")


def test_newer_major_is_refused_naming_both_versions():
    wire = msgpack.unpackb(encode(StepMetrics(run_id="r", seq=1)), raw=False)
    wire["v"] = [PROTOCOL_MAJOR + 1, 3]
    with pytest.raises(ProtocolVersionError) as err:
        decode(msgpack.packb(wire))
    assert f"{PROTOCOL_MAJOR + 1}.3" in str(err.value) and f"{PROTOCOL_MAJOR}.x" in str(err.value)


def test_garbage_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode(b"\xc1\xc1")
    with pytest.raises(ProtocolError):
        decode(msgpack.packb([1, 2]))
