"""The policy layer between scores and alerts: incidents, shadow mode, feedback, priors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pytest

from stream.embedded import run_embedded
from stream.events import IncidentEvent
from stream.pipeline import BatchResult, MemoryStore, Pipeline, Record
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig

T0 = 1.7e9


def device_records(
    device: str, n: int, spikes: tuple[int, ...] = (), seed: int = 0, start: int = 0
) -> list[Record]:
    """A device with two coupled sensors; each spike hits both sensors for 3 ticks."""
    rng = np.random.default_rng(seed)
    out = []
    x = 0.0
    for t in range(start, start + n):
        x = 0.8 * x + rng.normal(0, 1)
        bump = 30.0 if any(s <= t < s + 3 for s in spikes) else 0.0
        values = {"a": 10.0 + x + rng.normal(0, 0.3) + bump, "b": 50.0 + x + bump}
        msg = {"device": device, "ts": T0 + t, "values": values}
        out.append(Record("sensors", 0, t, device.encode(), orjson.dumps(msg)))
    return out


def settings(**over: object) -> Settings:
    return Settings.load(causality={"enabled": False}, **over)


def test_one_incident_per_episode_with_open_update_close() -> None:
    p = Pipeline(settings())
    result = p.process_sensors(device_records("pump-1", 1200, spikes=(600, 900)))
    anomalies = [a for a in result.anomalies if a.kind == "sensor"]
    assert {a.sensor for a in anomalies} == {"a", "b"}
    by_incident: dict[str, list[IncidentEvent]] = {}
    for event in result.incidents:
        by_incident.setdefault(event.incident_id, []).append(event)
    assert len(by_incident) == 2, [(e.action, e.last_ts - T0) for e in result.incidents]
    for events in by_incident.values():
        actions = [e.action for e in events]
        assert actions[0] == "open" and actions[-1] == "close", actions
        assert set(actions[1:-1]) <= {"update"}
        close = events[-1]
        # both sensors' episodes are in the one incident, and all are closed
        assert {c.stream for c in close.contributors} == {"pump-1/a", "pump-1/b"}
        assert not any(c.open for c in close.contributors)
        assert close.closed_ts is not None and close.closed_ts >= close.opened_ts
        assert close.anomalies >= 2
    assert len({e.id for e in result.incidents}) == len(result.incidents)


def test_incidents_survive_a_restart_mid_episode() -> None:
    from stream.pipeline import MemoryStore

    recs = device_records("pump-1", 1200, spikes=(600,))
    straight = Pipeline(settings()).process_sensors(recs).incidents
    store = MemoryStore()
    first = Pipeline(settings(), device_store=store)
    events = first.process_sensors(recs[:601]).incidents  # the episode is open now
    first.flush()
    events += Pipeline(settings(), device_store=store).process_sensors(recs[601:]).incidents
    assert [e.id for e in events] == [e.id for e in straight]


def test_shadow_mode_publishes_nothing_to_alerts() -> None:
    recs = device_records("pump-1", 1200, spikes=(600,))
    alerting = Pipeline(settings()).process_sensors(recs)
    shadow = Pipeline(settings(shadow=True)).process_sensors(recs)
    assert alerting.anomalies and alerting.incidents
    assert not shadow.anomalies and not shadow.incidents
    assert all(e.shadow for e in shadow.shadow)
    # the same events, only diverted
    assert sorted(e.id for e in shadow.shadow) == sorted(
        [a.id for a in alerting.anomalies] + [i.id for i in alerting.incidents]
    )


def test_shadow_mode_per_device_group() -> None:
    s = settings(device_groups=[{"name": "new-line", "match": "line2-*", "shadow": True}])
    p = Pipeline(s)
    result = p.process_sensors(
        device_records("line1-pump", 1200, spikes=(600,))
        + device_records("line2-pump", 1200, spikes=(600,), seed=1)
    )
    assert {a.device for a in result.anomalies} == {"line1-pump"}
    assert {e.key.split("/")[0] for e in result.shadow} == {"line2-pump"}


def feedback(key: str, verdict: str, offset: int) -> Record:
    body = {"key": key, "verdict": verdict, "incident_id": "x", "by": "op"}
    return Record("feedback", 0, offset, key.encode(), orjson.dumps(body))


def test_false_positive_feedback_raises_that_keys_thresholds() -> None:
    # A warning rate high enough that normal noise alerts now and then.
    s = settings(warning_rate=1e-2, critical_rate=1e-6)
    normal = device_records("pump-1", 6000, seed=4)
    base = Pipeline(s)
    base.process_sensors(normal[:3000])
    before = len(base.process_sensors(normal[3000:]).anomalies)

    p = Pipeline(s)
    p.process_sensors(normal[:3000])
    fb = p.process_feedback(
        [feedback("pump-1", "false_positive", i) for i in range(3)]
        + [Record("feedback", 0, 3, b"nobody", b'{"key": "nobody", "verdict": "false_positive"}')]
        + [Record("feedback", 0, 4, b"pump-1", b'{"key": "pump-1", "verdict": "maybe"}')]
    )
    assert fb.processed == 3
    assert sorted(d.reason for d in fb.dead_letters) == ["schema", "unknown_key"]
    assert p.devices["pump-1"].feedback.scale == 1 / 8
    after = len(p.process_sensors(normal[3000:]).anomalies)
    assert before >= 8, before  # the comparison needs alerts to cut
    assert after <= before / 3, (before, after)
    # a true positive moves the key back towards the configured rate
    p.process_feedback([feedback("pump-1", "true_positive", 5)])
    assert p.devices["pump-1"].feedback.scale == 1 / 4


def test_a_verdict_read_again_is_applied_once() -> None:
    # Kafka redelivers after a restart, a rebalance or a seek back: the key's state
    # remembers the verdicts it applied, by their offsets, as it does its readings.
    store = MemoryStore()
    p = Pipeline(settings(), device_store=store)
    p.process_sensors(device_records("pump-1", 300, seed=4))
    p.process_feedback([feedback("pump-1", "false_positive", 0)])
    p.process_feedback([feedback("pump-1", "false_positive", 0)])  # the same, again
    assert p.devices["pump-1"].feedback.scale == 1 / 2
    p.flush()
    restarted = Pipeline(settings(), device_store=store)
    restarted.process_feedback([feedback("pump-1", "false_positive", 0)])
    restarted.process_feedback([feedback("pump-1", "false_positive", 1)])  # a new one
    assert restarted.devices["pump-1"].feedback.scale == 1 / 4


@pytest.mark.parametrize("flushed", [True, False], ids=["flushed", "in-memory"])
def test_cohort_prior_lets_a_new_device_alert_from_its_first_readings(flushed: bool) -> None:
    s = settings(warmup=300, cohort_prior=True, cohort_warmup=10)
    without = Pipeline(settings(warmup=300))
    with_prior = Pipeline(s)
    veteran = device_records("pump-old", 2000, seed=2)
    with_prior.process_sensors(veteran)
    if flushed:
        with_prior.flush()  # a warmed-up peer becomes the group's prior
    # else: its state is only in memory (the faust worker flushes at offset commits),
    # and the newcomer must still start from it
    newcomer = device_records("pump-new", 200, spikes=(60,), seed=3)
    cold = without.process_sensors(newcomer)
    warm = with_prior.process_sensors(newcomer)
    assert not cold.anomalies  # still in its warm-up
    hits = [a for a in warm.anomalies if a.device == "pump-new"]
    assert hits and min(a.event_ts for a in hits) == T0 + 60
    # and it is quiet otherwise: nothing before the spike
    assert all(a.event_ts >= T0 + 60 for a in hits)
    model = with_prior.devices["pump-new"]
    assert model.device == "pump-new" and model.offsets == {"sensors:0": 199}


def test_plant_incidents_per_fault() -> None:
    """On the simulated plant, about one incident per injected fault."""
    plant = Plant(PlantConfig(n_devices=10, seed=3))
    run = plant.simulate(1500, plant.random_faults(12, 1500, duration=(40, 120)))
    messages = [("sensors", r["device"].encode(), orjson.dumps(r)) for r in run.batches()]
    res = run_embedded(Pipeline(Settings.load()), messages, 500)
    opened = Counter(e.key for e in res.incidents if e.action == "open")
    faults = Counter(f.device for f in run.faults)
    assert sum(opened.values()) <= 2 * len(run.faults), (opened, faults)
    assert sum(opened.values()) >= 0.7 * len(run.faults), (opened, faults)


def test_batch_result_defaults() -> None:
    r = BatchResult()
    assert r.incidents == [] and r.shadow == []
