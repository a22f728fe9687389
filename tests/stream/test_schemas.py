"""The committed JSON Schemas are those of the code, and real events validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson

import stream
from stream.codecs import dead_letter, encode
from stream.events import SCHEMA_FILES, json_schema
from stream.pipeline import Pipeline, Record
from stream.settings import Settings

SCHEMAS = Path(stream.__file__).parent / "schemas"


def test_committed_schemas_match_the_structs() -> None:
    for name, struct in SCHEMA_FILES.items():
        committed = json.loads((SCHEMAS / name).read_text())
        assert committed == json.loads(json.dumps(json_schema(struct))), (
            f"{name} is stale: regenerate with stream.events.write_schemas('stream/schemas')"
        )


def test_published_events_validate() -> None:
    p = Pipeline(Settings.load(warmup=10))
    recs = [
        Record(
            "t",
            0,
            i,
            b"d",
            orjson.dumps(
                {
                    "device": "d",
                    "sensor": "s",
                    "ts": 1.7e9 + i,
                    "value": float(i % 3) + (50 if i == 150 else 0),
                }
            ),
        )
        for i in range(200)
    ]
    anomalies = p.process_sensors(recs).anomalies
    assert anomalies
    schema = json.loads((SCHEMAS / "anomaly.v1.json").read_text())
    for a in anomalies:
        jsonschema.validate(orjson.loads(encode(a)), schema)
    dl = dead_letter(b"\xff", b"k", "invalid_utf8", "bad", "t", 0, 1)
    jsonschema.validate(
        orjson.loads(encode(dl)), json.loads((SCHEMAS / "dead-letter.v1.json").read_text())
    )
