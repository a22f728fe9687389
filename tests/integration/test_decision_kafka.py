"""The decision layer end to end on real Kafka, through both engines.

Warm-up (nothing alerts in a key's first ``warmup`` samples), shadow mode (a device
group's events go to the shadow topic only), incidents (open ... close with one id on
the incidents topic), cohort priors (a device that joins late alerts inside what
would be its warm-up) and operator feedback (a verdict on the feedback topic changes
that key's thresholds, a verdict on an unknown key is dead-lettered). Suppression
windows are tested end to end in ``test_worker_api.py``.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from harness import launch, log_tail, make_settings, read_all, stop

from stream.codecs import decode_anomaly, decode_incident
from stream.demo import produce, wait_for_worker
from stream.embedded import Message
from stream.simulate.faults import FaultSpec
from stream.simulate.plant import Plant, PlantConfig
from stream.topics import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WARMUP = 200
N_TICKS = 900


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def scenario() -> tuple[list[Message], list[Message]]:
    """Phase one: five pumps and a trial device; phase two: a late pump and feedback."""
    plant = Plant(PlantConfig(n_devices=6, seed=17))
    faults = [
        FaultSpec("pump-001", ("flow",), "spike", 400, 403, magnitude=8.0),
        FaultSpec("pump-002", ("temperature",), "stuck", 500, 620),
        FaultSpec("pump-005", ("flow",), "spike", 400, 403, magnitude=8.0),
        # in the warm-up: must not alert
        FaultSpec("pump-003", ("flow",), "spike", 100, 103, magnitude=8.0),
    ]
    # pump-000 goes on past N_TICKS as "pump-new" (a device of the same kind joining
    # late), with a spike at its own tick 40 (after cohort_warmup, before warmup).
    faults.append(
        FaultSpec("pump-000", ("flow",), "spike", N_TICKS + 40, N_TICKS + 43, magnitude=8)
    )
    run = plant.simulate(N_TICKS + 120, faults)
    one: list[Message] = []
    two: list[Message] = []
    for r in run.batches():
        device = "trial-005" if r["device"] == "pump-005" else r["device"]
        if r["ts"] >= run.timestamps[N_TICKS]:
            if device == "pump-000":
                two.append(("sensors", b"pump-new", orjson.dumps({**r, "device": "pump-new"})))
            continue
        one.append(("sensors", device.encode(), orjson.dumps({**r, "device": device})))
    two += [
        ("feedback", b"pump-004", orjson.dumps({"key": "pump-004", "verdict": "false_positive"})),
        ("feedback", b"ghost", orjson.dumps({"key": "ghost", "verdict": "true_positive"})),
    ]
    return one, two


@pytest.mark.parametrize("engine", ["faust", "kafka"])
def test_warmup_shadow_incidents_priors_feedback(
    kafka_broker: str, tmp_path: Path, engine: str
) -> None:
    s = make_settings(
        kafka_broker,
        tmp_path,
        engine=engine,
        warmup=WARMUP,
        cohort_prior=True,
        causality={"enabled": False},
        device_groups=[{"name": "trial", "match": "trial-*", "shadow": True}],
    )
    one, two = scenario()
    create_topics(s)
    proc = launch(s, tmp_path / "worker.log")
    try:
        # Every phase-one device first, before any has learned enough to be a prior
        # (partitions are consumed at different speeds): they all start cold.
        first_ticks = 6 * WARMUP
        produce(kafka_broker, s, one[:first_ticks])
        wait_for_worker(proc, s.web_port, first_ticks, timeout=240)
        produce(kafka_broker, s, one[first_ticks:])
        wait_for_worker(proc, s.web_port, len(one), timeout=240)
        produce(kafka_broker, s, two)
        wait_for_worker(proc, s.web_port, len(one) + len(two), timeout=120)
        # the verdict reached pump-004's state
        deadline = time.monotonic() + 30
        state = get_json(s.web_port, "/api/v1/keys/pump-004")
        while state["feedback"]["fp"] < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            state = get_json(s.web_port, "/api/v1/keys/pump-004")
        anomalies = [
            decode_anomaly(v) for _, _, v in read_all(kafka_broker, s.topic("anomalies"), 4)
        ]
        incidents = [
            decode_incident(v) for _, _, v in read_all(kafka_broker, s.topic("incidents"), 4)
        ]
        shadow = [orjson.loads(v) for _, _, v in read_all(kafka_broker, s.topic("shadow"), 4)]
        dead = [orjson.loads(v) for _, _, v in read_all(kafka_broker, s.topic("dead_letter"), 4)]
    finally:
        stop(proc)
        print(log_tail(tmp_path / "worker.log"))
    t0 = orjson.loads(one[0][2])["ts"]

    # warm-up: nothing published from any key's first WARMUP samples (pump-003's spike)
    assert all(a.device == "pump-new" or a.event_ts - t0 >= WARMUP for a in anomalies)
    devices = {a.device for a in anomalies}
    assert {"pump-001", "pump-002", "pump-new"} <= devices
    assert "pump-003" not in devices or all(
        a.event_ts - t0 >= WARMUP for a in anomalies if a.device == "pump-003"
    )
    # shadow: the trial group is only on the shadow topic, marked
    assert not any(a.key.startswith("trial-") for a in anomalies)
    assert not any(i.key.startswith("trial-") for i in incidents)
    assert shadow and all(e["shadow"] and e["key"].startswith("trial-005") for e in shadow)
    # incidents: every incident opens first; pump-001's spike opens and closes one
    by_id: dict[str, list[str]] = defaultdict(list)
    for i in sorted(incidents, key=lambda i: (i.detected_ts, i.last_ts)):
        by_id[i.incident_id].append(i.action)
    assert by_id and all(actions[0] == "open" for actions in by_id.values()), by_id
    spike = {
        i.incident_id for i in incidents if i.key == "pump-001" and 400 <= i.opened_ts - t0 < 403
    }
    assert len(spike) == 1, [(i.action, i.opened_ts - t0) for i in incidents if i.key == "pump-001"]
    assert {i.action for i in incidents if i.incident_id in spike} >= {"open", "close"}
    # cohort prior: the late device alerted on its spike (its own ticks 40-42, or the
    # drop right after), well inside what would have been its warm-up, and not before
    late = sorted(a.event_ts for a in anomalies if a.device == "pump-new")
    first_late = orjson.loads(two[0][2])["ts"]
    assert late and 40 <= late[0] - first_late <= 46, [t - first_late for t in late]
    # feedback: applied to pump-004's state, and the unknown key dead-lettered
    assert state["feedback"] == {"scale": 0.5, "fp": 1, "tp": 0}
    assert [d["reason"] for d in dead] == ["unknown_key"]
