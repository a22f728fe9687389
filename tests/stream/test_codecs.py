"""Decoding rules: every bad input is rejected with its reason, good input passes."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.codecs import (
    REASONS,
    DecodeError,
    InputLimits,
    decode_log_message,
    decode_sensor_message,
)

LIMITS = InputLimits(max_message_bytes=4096, max_sensors_per_device=8, max_future_skew_s=3600)
NOW = 1_800_000_000.0


def ok(**over: object) -> bytes:
    msg = {"device": "d1", "sensor": "flow", "ts": 1_700_000_000.0, "value": 1.5, **over}
    return orjson.dumps(msg)


def test_single_and_batched_forms() -> None:
    [r] = decode_sensor_message(ok(), b"d1", LIMITS, NOW)
    assert (r.device, r.sensor, r.ts, r.value) == ("d1", "flow", 1_700_000_000.0, 1.5)
    batch = orjson.dumps({"device": "d1", "ts": 1_700_000_000_000, "values": {"a": 1, "b": 2.5}})
    rs = decode_sensor_message(batch, None, LIMITS, NOW)
    assert [(r.sensor, r.value, r.ts) for r in rs] == [("a", 1.0, 1.7e9), ("b", 2.5, 1.7e9)]
    ticks = orjson.dumps(
        {
            "device": "d1",
            "ticks": [{"ts": 1.7e9, "values": {"a": 1}}, {"ts": 1.7e9 + 1, "values": {"a": 2}}],
        }
    )
    assert [r.value for r in decode_sensor_message(ticks, b"d1", LIMITS, NOW)] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b"{nope", None, "invalid_json"),
        (b"\xff\xfe\xfa", None, "invalid_utf8"),
        (ok(value="high"), None, "schema"),
        (ok(value=True), None, "schema"),
        (orjson.dumps({"device": "d1", "sensor": "s", "value": 1}), None, "schema"),
        (b'{"device":"d1","sensor":"s","ts":1,"value":NaN}', None, "invalid_json"),
        (b'{"device":"d1","sensor":"s","ts":1,"value":1e999}', None, "schema"),
        (ok(device=""), None, "empty_name"),
        (ok(sensor="  "), None, "empty_name"),
        (ok(), b"other-device", "key_mismatch"),
        (ok(ts=NOW + 7200), None, "future_timestamp"),
        (ok(ts=-5), None, "bad_timestamp"),
        (b"x" * 5000, None, "oversize"),
        (orjson.dumps([1, 2]), None, "schema"),
        (
            orjson.dumps({"device": "d1", "ts": 1.7e9, "values": {f"s{i}": i for i in range(9)}}),
            None,
            "too_many_sensors",
        ),
        (orjson.dumps({"device": "d1", "values": {"a": 1}}), None, "schema"),
        (ok(value=1.0000001e15), None, "out_of_range"),
        (ok(value=-2e15), None, "out_of_range"),
        (
            orjson.dumps({"device": "d1", "ts": 1.7e9, "values": {"a": 1, "b": -3e15}}),
            None,
            "out_of_range",
        ),
        (
            orjson.dumps(
                {
                    "device": "d1",
                    "ticks": [
                        {"ts": 1.7e9, "values": {"a": 1}},
                        {"ts": 1.7e9, "values": {"a": 4e15}},
                    ],
                }
            ),
            None,
            "out_of_range",
        ),
    ],
)
def test_bad_input_has_a_reason(raw: bytes, key: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sensor_message(raw, key, LIMITS, NOW)
    assert info.value.reason == reason
    assert reason in REASONS
    assert str(info.value)


def test_values_at_the_bound_are_accepted() -> None:
    # The bound is inclusive, in both forms and both signs.
    for value in (1e15, -1e15, 0.0):
        assert decode_sensor_message(ok(value=value), None, LIMITS, NOW)[0].value == value
    batch = orjson.dumps({"device": "d1", "ts": 1.7e9, "values": {"a": 1e15, "b": -1e15}})
    assert [r.value for r in decode_sensor_message(batch, b"d1", LIMITS, NOW)] == [1e15, -1e15]


def test_log_records() -> None:
    raw = orjson.dumps(
        {"host": "h1", "user": "alice", "source": "shell", "ts": 1.7e9, "message": "ls -la"}
    )
    rec = decode_log_message(raw, b"alice", LIMITS, NOW)
    assert rec.user == "alice" and rec.message == "ls -la"
    with pytest.raises(DecodeError) as info:
        decode_log_message(raw, b"mallory", LIMITS, NOW)
    assert info.value.reason == "key_mismatch"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    try:
        readings = decode_sensor_message(raw, None, LIMITS, NOW)
    except DecodeError as exc:
        assert exc.reason in REASONS
    else:
        assert all(math.isfinite(r.value) and math.isfinite(r.ts) for r in readings)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["device", "sensor", "ts", "value", "values", "extra"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
        ),
    )
)
def test_arbitrary_json_objects_are_decoded_or_rejected(obj: dict[str, object]) -> None:
    raw = json.dumps(obj).encode()  # stdlib: big ints and NaN tokens too
    try:
        readings = decode_sensor_message(raw, None, LIMITS, NOW)
    except DecodeError as exc:
        assert exc.reason in REASONS
    else:
        assert all(math.isfinite(r.value) for r in readings)
