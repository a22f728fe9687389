"""The events that travel on Vigil's topics, as typed structs.

Inputs are sensor readings (one per message, or a device's sensors batched per tick)
and log events; outputs are anomaly events and dead-letter records. The JSON Schema of
each is in ``stream/schemas/`` and the prose in ``docs/EVENTS.md``. Every output carries
a ``schema`` tag with a version, so consumers can tell formats apart as they evolve.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ANOMALY_SCHEMA = "vigil.anomaly/1"
DEAD_LETTER_SCHEMA = "vigil.dead-letter/1"
INCIDENT_SCHEMA = "vigil.incident/1"


class SensorReading(msgspec.Struct, frozen=True):
    """One value of one sensor: ``{"device", "sensor", "ts", "value"}``."""

    device: str
    sensor: str
    ts: float
    value: float


class Tick(msgspec.Struct, frozen=True):
    """One tick of a multi-tick :class:`SensorBatch`."""

    ts: float
    values: dict[str, float]


class SensorBatch(msgspec.Struct, frozen=True):
    """All sensors of one device at one tick: ``{"device", "ts", "values": {sensor: value}}``.

    ``ticks`` optionally carries several ticks in one message:
    ``{"device", "ticks": [{"ts", "values"}, ...]}`` (then ``ts``/``values`` are omitted).
    """

    device: str
    ts: float | None = None
    values: dict[str, float] | None = None
    ticks: list[Tick] | None = None


class LogRecord(msgspec.Struct, frozen=True):
    """A structured log event: ``{"host", "user", "source", "ts", "message"}``."""

    host: str
    user: str
    source: str
    ts: float
    message: str


Kind = Literal["sensor", "log", "causality"]
Severity = Literal["warning", "critical"]


class AnomalyEvent(msgspec.Struct, omit_defaults=False):
    """What Vigil publishes when it judges something anomalous.

    ``id`` is deterministic (a hash of key, detector and event time), so a repeat
    produced after a restart carries the same id and consumers can drop it.
    """

    id: str
    kind: Kind
    key: str
    detector: str
    event_ts: float
    detected_ts: float
    score: float
    threshold: float
    severity: Severity
    model_version: str
    device: str | None = None
    sensor: str | None = None
    host: str | None = None
    user: str | None = None
    actual: dict[str, float] | None = None
    expected: dict[str, float] | None = None
    attribution: dict[str, float] | None = None
    episode_id: str | None = None
    reason: str | None = None
    details: dict[str, Any] | None = None
    shadow: bool = False
    schema: str = ANOMALY_SCHEMA


class Contributor(msgspec.Struct):
    """One scored stream of an incident: a sensor, a device's joint score, an edge, a log
    detector, with its episode and whether that episode is still open."""

    stream: str
    detector: str
    episode_id: str | None
    severity: Severity
    open: bool


class IncidentEvent(msgspec.Struct, omit_defaults=False):
    """One event of an incident: ``open``, ``update`` (a stream joined, or the severity
    rose) or ``close``. All events of an incident share ``incident_id``; ``id`` is this
    event's deterministic id."""

    id: str
    incident_id: str
    action: Literal["open", "update", "close"]
    key: str
    severity: Severity
    opened_ts: float
    last_ts: float
    closed_ts: float | None
    detected_ts: float
    anomalies: int
    contributors: list[Contributor]
    reason: str | None = None
    shadow: bool = False
    schema: str = INCIDENT_SCHEMA


Verdict = Literal["false_positive", "true_positive"]


class Feedback(msgspec.Struct, frozen=True):
    """An operator's verdict on an incident of ``key`` (input of the feedback topic)."""

    key: str
    verdict: Verdict
    incident_id: str | None = None
    by: str | None = None
    note: str | None = None
    ts: float | None = None


class DeadLetter(msgspec.Struct):
    """A message Vigil could not use, with why, where it came from, and its bytes."""

    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    ts: float
    key_b64: str | None
    value_b64: str
    value_size: int
    truncated: bool = False
    value_sha256: str | None = None
    schema: str = DEAD_LETTER_SCHEMA


#: The versioned JSON Schema files in ``stream/schemas/``, by event type.
SCHEMA_FILES: dict[str, type[msgspec.Struct]] = {
    "sensor-reading.v1.json": SensorReading,
    "sensor-batch.v1.json": SensorBatch,
    "log-record.v1.json": LogRecord,
    "anomaly.v1.json": AnomalyEvent,
    "dead-letter.v1.json": DeadLetter,
    "incident.v1.json": IncidentEvent,
    "feedback.v1.json": Feedback,
}


def json_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of an event type, generated from its struct."""
    schema = msgspec.json.schema(struct)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_schemas(directory: str) -> list[str]:
    """(Re)write the schema files; ``python -c 'import stream.events as e; e.write_schemas(...)'``."""
    import json
    from pathlib import Path

    out = []
    for name, struct in SCHEMA_FILES.items():
        path = Path(directory) / name
        path.write_text(json.dumps(json_schema(struct), indent=2, sort_keys=True) + "\n")
        out.append(str(path))
    return out
