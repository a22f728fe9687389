"""Bytes to events and events to bytes, with a clear reason for every rejection.

Decoding is strict: wrong types, missing fields, NaN or infinite numbers, empty names,
oversize payloads, a message key that disagrees with the payload, and timestamps too
far in the future are all rejected with a :class:`DecodeError` whose ``reason`` is a
short code (used as a metric label and in the dead-letter record) and whose message
says what was wrong. Unknown extra fields are allowed, so producers can add context.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from stream.events import (
    AnomalyEvent,
    DeadLetter,
    Feedback,
    IncidentEvent,
    LogRecord,
    SensorBatch,
    SensorReading,
)
from stream.logparse import LogEvent, LogParseError, enrich, parse_line

#: Reason codes of rejected input (bounded: they are metric labels).
REASONS = (
    "oversize",
    "invalid_utf8",
    "invalid_json",
    "schema",
    "non_finite",
    "empty_name",
    "key_mismatch",
    "bad_timestamp",
    "future_timestamp",
    "too_many_sensors",
    "out_of_range",
    "unparseable_log",
    "unknown_key",
    "processing_error",
)

MAX_NAME_LENGTH = 256
# Epoch seconds before this are surely milliseconds sent as seconds; beyond 1e11 we
# read the number as milliseconds (a documented rule, see docs/EVENTS.md).
_MS_THRESHOLD = 1e11


class DecodeError(ValueError):
    """Input that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The input rules of one worker (from :class:`stream.settings.Settings`)."""

    max_message_bytes: int = 1_048_576
    max_sensors_per_device: int = 64
    max_future_skew_s: float = 86_400.0


_reading_decoder = msgspec.json.Decoder(SensorReading)
_batch_decoder = msgspec.json.Decoder(SensorBatch)
_log_decoder = msgspec.json.Decoder(LogRecord)
_feedback_decoder = msgspec.json.Decoder(Feedback)
_encoder = msgspec.json.Encoder()


def _check_size(raw: bytes, limits: InputLimits) -> None:
    if len(raw) > limits.max_message_bytes:
        raise DecodeError(
            "oversize", f"message of {len(raw)} bytes exceeds {limits.max_message_bytes}"
        )


def _check_utf8(raw: bytes) -> None:
    # msgspec does not validate UTF-8 everywhere (object keys it compares bytewise,
    # strings of unknown fields it skips), so check the whole payload first; ASCII, the
    # common case, needs no decoding.
    if raw.isascii():
        return
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("invalid_utf8", "payload is not valid UTF-8") from None


def _decode_with(decoder: msgspec.json.Decoder, raw: bytes):  # type: ignore[no-untyped-def]
    _check_utf8(raw)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise DecodeError("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError("invalid_json", str(exc)) from None


class _Shape(msgspec.Struct):
    """Which top-level fields a sensors message has (values skipped, not parsed)."""

    value: msgspec.Raw = msgspec.Raw()
    values: msgspec.Raw = msgspec.Raw()
    ticks: msgspec.Raw = msgspec.Raw()


_shape_decoder = msgspec.json.Decoder(_Shape)


def _is_batch(raw: bytes) -> bool:
    """Batched form: a top-level ``values`` or ``ticks`` field and no ``value`` field."""
    # Fast path: without the words anywhere it is a single reading. With them, they may
    # be a sensor's name or inside an extra field: look at the top-level fields.
    if b'"values"' not in raw and b'"ticks"' not in raw:
        return False
    try:
        shape = _shape_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True  # not an object: let the batch decoder say what is wrong
    return (len(shape.values) > 0 or len(shape.ticks) > 0) and len(shape.value) == 0


def _check_name(value: str, field: str) -> None:
    if not value or not value.strip():
        raise DecodeError("empty_name", f"{field} is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise DecodeError("schema", f"{field} is longer than {MAX_NAME_LENGTH} characters")


def normalise_ts(ts: float, limits: InputLimits, now: float | None = None) -> float:
    """Epoch seconds from seconds or milliseconds; rejects non-finite and far-future times."""
    if not math.isfinite(ts) or ts < 0:
        raise DecodeError("bad_timestamp", f"timestamp {ts!r} is not a non-negative number")
    if ts > _MS_THRESHOLD:
        ts = ts / 1000.0
    now = time.time() if now is None else now
    if ts > now + limits.max_future_skew_s:
        raise DecodeError(
            "future_timestamp",
            f"timestamp {ts:.0f} is more than {limits.max_future_skew_s:.0f} s ahead",
        )
    return ts


def _check_key(key: bytes | None, expected: str, field: str) -> None:
    # A keyed message whose key names another device would put that device's state in
    # the wrong partition: refuse it rather than guess which one is right.
    if key is not None and key != expected.encode("utf-8"):
        raise DecodeError(
            "key_mismatch", f"message key {key[:64]!r} does not match {field} {expected[:64]!r}"
        )


#: Readings beyond this magnitude are rejected: no physical sensor reports them, and
#: squares of such values overflow the detectors' second moments.
MAX_ABS_VALUE = 1e15


def _check_value(value: float, where: str) -> None:
    # The decoders test ``-MAX_ABS_VALUE <= value <= MAX_ABS_VALUE`` first (false for
    # NaN and the infinities too) and call this, which builds the message, only when
    # the test fails: building it for every reading was about a third of the time a
    # batched message took to decode (bench/bench_decode.py).
    if not math.isfinite(value):
        raise DecodeError("non_finite", f"{where} is {value!r}; only finite numbers are accepted")
    if abs(value) > MAX_ABS_VALUE:
        raise DecodeError(
            "out_of_range", f"{where} is {value!r}; |value| must be <= {MAX_ABS_VALUE:g}"
        )


def decode_sensor_message(
    raw: bytes, key: bytes | None, limits: InputLimits, now: float | None = None
) -> list[SensorReading]:
    """The readings in one sensors-topic message (single or batched form), validated."""
    _check_size(raw, limits)
    # The batched form is the only one with "values" or "ticks" fields; peek before
    # choosing a typed decoder so each form gets precise error messages.
    if _is_batch(raw):
        batch: SensorBatch = _decode_with(_batch_decoder, raw)
        return list(_expand_batch(batch, key, limits, now))
    reading: SensorReading = _decode_with(_reading_decoder, raw)
    _check_name(reading.device, "device")
    _check_name(reading.sensor, "sensor")
    _check_key(key, reading.device, "device")
    if not -MAX_ABS_VALUE <= reading.value <= MAX_ABS_VALUE:  # also NaN: see _check_value
        _check_value(reading.value, f"value of {reading.sensor!r}")  # raises, with why
    ts = normalise_ts(reading.ts, limits, now)
    if ts != reading.ts:
        reading = SensorReading(reading.device, reading.sensor, ts, reading.value)
    return [reading]


def _expand_batch(
    batch: SensorBatch, key: bytes | None, limits: InputLimits, now: float | None
) -> Iterator[SensorReading]:
    _check_name(batch.device, "device")
    _check_key(key, batch.device, "device")
    if batch.ticks is not None:
        ticks = [(t.ts, t.values) for t in batch.ticks]
    elif batch.ts is not None and batch.values is not None:
        ticks = [(batch.ts, batch.values)]
    else:
        raise DecodeError("schema", "a batch needs 'ts' and 'values', or 'ticks'")
    out: list[SensorReading] = []
    device = batch.device
    bound = MAX_ABS_VALUE
    named: set[str] = set()  # sensor names already checked in this message
    for ts_raw, values in ticks:
        if len(values) > limits.max_sensors_per_device:
            raise DecodeError(
                "too_many_sensors",
                f"{len(values)} sensors in one tick exceeds {limits.max_sensors_per_device}",
            )
        ts = normalise_ts(ts_raw, limits, now)
        for sensor, value in values.items():
            if sensor not in named:
                _check_name(sensor, "sensor")
                named.add(sensor)
            if not -bound <= value <= bound:  # also NaN: see _check_value
                _check_value(value, f"value of {sensor!r}")  # raises, with why
            out.append(SensorReading(device, sensor, ts, value))
    return iter(out)


def decode_log_message(
    raw: bytes, key: bytes | None, limits: InputLimits, now: float | None = None
) -> LogRecord:
    """A structured log event, validated (raw lines are parsed by :mod:`stream.logparse`)."""
    _check_size(raw, limits)
    record: LogRecord = _decode_with(_log_decoder, raw)
    _check_name(record.host, "host")
    _check_name(record.source, "source")
    ts = normalise_ts(record.ts, limits, now)
    if key is not None and key not in (record.user.encode(), record.host.encode()):
        raise DecodeError(
            "key_mismatch", f"message key {key[:64]!r} is neither the user nor the host"
        )
    if ts != record.ts:
        record = LogRecord(record.host, record.user, record.source, ts, record.message)
    return record


def decode_log_input(
    raw: bytes, key: bytes | None, limits: InputLimits, now: float | None = None
) -> LogEvent:
    """A log event from a JSON object or a raw line (syslog/auth.log, shell record).

    JSON objects are decoded strictly (:class:`~stream.events.LogRecord`); other
    payloads are parsed by :func:`stream.logparse.parse_line`. A keyed message's key
    must be the event's user or host.
    """
    _check_size(raw, limits)
    if raw.lstrip()[:1] == b"{":
        record = decode_log_message(raw, key, limits, now)
        return enrich(LogEvent(record.host, record.user, record.source, record.ts, record.message))
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("invalid_utf8", "payload is not valid UTF-8") from None
    try:
        event = parse_line(line)
    except LogParseError as exc:
        raise DecodeError("unparseable_log", str(exc)) from None
    if not (event.host or event.user):
        raise DecodeError("empty_name", "the line names neither a host nor a user")
    if key is not None and key not in (event.user.encode(), event.host.encode()):
        raise DecodeError(
            "key_mismatch", f"message key {key[:64]!r} is neither the user nor the host"
        )
    event.ts = normalise_ts(event.ts, limits, now)
    return event


def decode_feedback(raw: bytes, key: bytes | None, limits: InputLimits) -> Feedback:
    """An operator's verdict from the feedback topic; a keyed message's key is its key."""
    _check_size(raw, limits)
    feedback: Feedback = _decode_with(_feedback_decoder, raw)
    _check_name(feedback.key, "key")
    if key is not None and key != feedback.key.encode():
        raise DecodeError("key_mismatch", f"message key {key[:64]!r} is not {feedback.key!r}")
    return feedback


def encode(
    event: AnomalyEvent
    | IncidentEvent
    | DeadLetter
    | SensorReading
    | SensorBatch
    | LogRecord
    | Feedback,
) -> bytes:
    """JSON bytes of any Vigil event."""
    return _encoder.encode(event)


def decode_incident(raw: bytes) -> IncidentEvent:
    """An incident event back from JSON (for consumers and tests)."""
    return msgspec.json.decode(raw, type=IncidentEvent)


def decode_anomaly(raw: bytes) -> AnomalyEvent:
    """An anomaly event back from JSON (for consumers and tests)."""
    return msgspec.json.decode(raw, type=AnomalyEvent)


#: Original bytes kept in a dead-letter record; a larger payload is cut (with its size
#: and SHA-256) so the record stays under the broker's message size, and the whole
#: original stays findable on its input topic at the recorded partition and offset.
DEAD_LETTER_MAX_BYTES = 256 * 1024


def dead_letter(
    raw: bytes,
    key: bytes | None,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    now: float | None = None,
) -> DeadLetter:
    """The dead-letter record of a rejected message (original bytes kept, base64)."""
    kept = raw[:DEAD_LETTER_MAX_BYTES]
    truncated = len(kept) < len(raw)
    return DeadLetter(
        reason=reason,
        error=error[:1000],
        topic=topic,
        partition=partition,
        offset=offset,
        ts=time.time() if now is None else now,
        key_b64=base64.b64encode(key[:DEAD_LETTER_MAX_BYTES]).decode("ascii")
        if key is not None
        else None,
        value_b64=base64.b64encode(kept).decode("ascii"),
        value_size=len(raw),
        truncated=truncated,
        value_sha256=hashlib.sha256(raw).hexdigest() if truncated else None,
    )


def event_id(*parts: object) -> str:
    """A deterministic id from the parts that identify an event (hex, 24 chars)."""
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(repr(part).encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()
