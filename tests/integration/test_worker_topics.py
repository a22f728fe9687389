"""The faust worker creates its topics, and survives an output topic with fewer partitions.

Outputs go to their input's partition number (so exactly-once can put them in that
partition's transaction). A broker that creates topics on first use gives them one
partition, and sending to a partition that does not exist crashed the agent on every
batch with an incident (found by ``bench/latency.py``, which did not create topics).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from harness import launch, log_tail, make_settings, read_all, stop

from stream.codecs import decode_incident
from stream.demo import produce, wait_for_worker
from stream.embedded import Message
from stream.simulate.faults import FaultSpec
from stream.simulate.plant import Plant, PlantConfig
from stream.topics import partition_counts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEVICES = 6


def spikes() -> list[Message]:
    plant = Plant(PlantConfig(n_devices=DEVICES, seed=5))
    faults = [
        FaultSpec(f"pump-{k:03d}", ("flow",), "spike", 250, 253, magnitude=10.0)
        for k in range(DEVICES)
    ]
    run = plant.simulate(320, faults)
    return [("sensors", r["device"].encode(), orjson.dumps(r)) for r in run.batches()]


def test_worker_creates_topics_and_outputs_fit_a_smaller_topic(
    kafka_broker: str, tmp_path: Path
) -> None:
    s = make_settings(kafka_broker, tmp_path, warmup=100, causality={"enabled": False})
    incidents = s.topic("incidents")
    # Someone made the incidents topic with one partition before the worker started.
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic(incidents, num_partitions=1, replication_factor=1)])[
        incidents
    ].result(30)
    proc = launch(s, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        counts = partition_counts(s)
        while counts.get(s.topic("sensors")) is None and time.monotonic() < deadline:
            time.sleep(0.5)
            counts = partition_counts(s)
        # The worker made the others, with the configured partitions.
        assert counts[s.topic("sensors")] == counts[s.topic("anomalies")] == 4
        assert counts[incidents] == 1
        msgs = spikes()
        produce(kafka_broker, s, msgs)
        wait_for_worker(proc, s.web_port, len(msgs), timeout=180)
        deadline = time.monotonic() + 30
        opened: set[str] = set()
        while len(opened) < DEVICES and time.monotonic() < deadline:
            events = [decode_incident(v) for _, _, v in read_all(kafka_broker, incidents, 1)]
            opened = {i.key for i in events if i.action == "open"}
            time.sleep(0.5)
    finally:
        stop(proc)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "Unrecognized partition" not in log, log_tail(tmp_path / "worker.log")
    assert "Crashed" not in log, log_tail(tmp_path / "worker.log")
    # Every spiked pump opened an incident, whatever its input partition.
    assert opened == {f"pump-{k:03d}" for k in range(DEVICES)}
