"""End to end on a real broker: simulated plant and malformed input through one worker.

The worker is the real ``vigil worker`` (faust engine) in a subprocess; the test only
produces to the input topics and reads the output topics, as a user would.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from pathlib import Path

import orjson
import pytest

from stream.codecs import decode_anomaly
from stream.demo import produce, read_topic, start_worker, wait_for_worker, worker_counts
from stream.embedded import Message
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig
from stream.topics import create_topics
from stream.truth import match_detections

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FAULT_KINDS = ("spike", "drift", "stuck")
MAX_BYTES = 65_536


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def malformed_messages(n: int) -> list[tuple[bytes | None, bytes]]:
    """``n`` bad messages of many kinds, each unique so it can be found again."""
    kinds = [
        lambda i: (b"pump-000", b"{not json %d" % i),
        lambda i: (b"pump-000", b"\xff\xfe%d" % i),
        lambda i: (
            b"pump-001",
            orjson.dumps(
                {"device": "pump-001", "sensor": "flow", "ts": 1.7e9 + i, "value": "high"}
            ),
        ),
        lambda i: (b"pump-001", orjson.dumps({"device": "pump-001", "sensor": "flow", "value": i})),
        lambda i: (
            b"pump-002",
            b'{"device": "pump-002", "sensor": "flow", "ts": %d, "value": 1e999}' % i,
        ),
        lambda i: (
            b"pump-003",
            orjson.dumps({"device": "pump-999", "sensor": "flow", "ts": 1.7e9 + i, "value": 1.0}),
        ),
        lambda i: (
            b"pump-004",
            orjson.dumps({"device": "", "sensor": "x", "ts": 1.7e9, "value": float(i)}),
        ),
        lambda i: (
            b"pump-005",
            orjson.dumps({"device": "pump-005", "sensor": "flow", "ts": 9.9e12 + i, "value": 1.0}),
        ),
        lambda i: (b"pump-006", orjson.dumps([i, 2, 3])),
        lambda i: (b"pump-007", b'{"device": "pump-007", "ts": %d, "values": {"a": true}}' % i),
        lambda i: (None, b"x" * (MAX_BYTES + 1 + i)),
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


@pytest.fixture()
def settings(kafka_broker: str, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings.load(
        broker=kafka_broker,
        app_id=f"vigil-it-{tag}",
        topic_prefix=f"it-{tag}.",
        partitions=4,
        web_port=_free_port(),
        data_dir=str(tmp_path / "data"),
        max_message_bytes=MAX_BYTES,
    )


def test_plant_and_bad_input_through_one_worker(settings: Settings, tmp_path: Path) -> None:
    n_ticks = 1200
    plant = Plant(PlantConfig(n_devices=20, seed=11))
    plan = plant.random_faults(24, n_ticks, kinds=FAULT_KINDS, duration=(30, 150))
    run = plant.simulate(n_ticks, plan)
    assert len(run.faults) >= 20 and len({f.kind for f in run.faults}) >= 3

    bad = malformed_messages(60)
    messages: list[Message] = [
        ("sensors", rec["device"].encode(), orjson.dumps(rec)) for rec in run.readings()
    ]
    # Spread the bad messages through the stream.
    step = len(messages) // (len(bad) + 1)
    for j, (key, value) in enumerate(bad):
        messages.insert((j + 1) * step + j, ("sensors", key, value))

    create_topics(settings)
    proc = start_worker(settings, tmp_path / "worker.log")
    try:
        produce(settings.broker or "", settings, messages)
        counts = wait_for_worker(
            proc, settings.web_port, len(messages), timeout=420, log_path=tmp_path / "worker.log"
        )
        assert proc.poll() is None, "worker died"
        health = worker_counts(settings.web_port)  # the worker still answers
        assert health["processed"] == counts["processed"]
        anomalies = [
            decode_anomaly(v)
            for v in read_topic(settings.broker or "", settings.topic("anomalies"))
        ]
        dead = [
            orjson.loads(v)
            for v in read_topic(settings.broker or "", settings.topic("dead_letter"))
        ]
    finally:
        proc.terminate()
        proc.wait(60)
        log_tail = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        print(log_tail)

    # Every input is accounted for: processed + dead-lettered == produced.
    assert counts["processed"] + counts["dead_letter"] == len(messages)
    assert len(dead) == counts["dead_letter"] == len(bad)
    # Every malformed message is in the dead-letter topic, with a reason and its bytes.
    dead_values = {base64.b64decode(d["value_b64"]): d for d in dead}
    for _, value in bad:
        assert value in dead_values, f"malformed message not dead-lettered: {value[:60]!r}"
        assert dead_values[value]["reason"] and dead_values[value]["error"]
    assert all(d["topic"] == settings.topic("sensors") and d["offset"] >= 0 for d in dead)

    report = match_detections(run.faults, [a for a in anomalies if a.kind == "sensor"])
    print(report.as_dict())
    assert report.recall >= 0.90, report.as_dict()
    # Anomaly ids are deterministic and unique per event.
    assert len({a.id for a in anomalies}) == len(anomalies)
    assert os.environ.get("CI") is None or report.episodes > 0
