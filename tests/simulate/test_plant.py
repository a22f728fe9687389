"""Tests of the plant simulator, its fault injection and file output."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.simulate import (
    FAULT_KINDS,
    Fault,
    FaultPlan,
    FaultSpec,
    Plant,
    PlantConfig,
    faults_from_truth_json,
    send_to_kafka,
    simulate_oplogs,
    simulate_plant,
    write_files,
)
from stream.simulate.emit import DeliveryError, plant_messages

SMALL = PlantConfig(n_devices=4, seed=7)
ALL_SENSORS = ("current", "flow", "pressure", "temperature", "vibration")


def _ols_gain(y: np.ndarray, own: list[np.ndarray], other: np.ndarray) -> float:
    """Fraction of residual variance of ``y | own lags`` explained by adding ``other``."""

    def resid_var(cols: list[np.ndarray]) -> float:
        X = np.column_stack([np.ones(len(y)), *cols])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        return float(np.var(y - X @ coef))

    return 1.0 - resid_var([*own, other]) / resid_var(own)


def _lagged_gain(x: np.ndarray, driver: int, driven: int, lag: int, p: int = 3) -> float:
    """Granger-style gain of ``driver_{t-lag}`` for ``driven_t`` given ``p`` own lags."""
    n = len(x)
    m = max(p, lag)
    y = x[m:, driven]
    own = [x[m - k : n - k, driven] for k in range(1, p + 1)]
    return _ols_gain(y, own, x[m - lag : n - lag, driver])


def test_shapes_names_and_timestamps() -> None:
    run = simulate_plant(SMALL, 300)
    assert run.values.shape == (4, 300, 4)
    assert run.values.dtype == np.float64
    assert run.devices == ["pump-000", "pump-001", "pump-002", "pump-003"]
    assert run.sensors == SMALL.sensors
    assert run.timestamps.shape == (300,)
    assert run.timestamps[0] == SMALL.start_ts
    np.testing.assert_allclose(np.diff(run.timestamps), SMALL.period_s)
    assert np.isfinite(run.values).all()
    assert run.faults == []


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = simulate_plant(SMALL, 500)
    b = simulate_plant(SMALL, 500)
    c = simulate_plant(PlantConfig(n_devices=4, seed=8), 500)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)


def test_extra_sensor_does_not_change_the_others() -> None:
    base = simulate_plant(SMALL, 400)
    more = simulate_plant(PlantConfig(n_devices=4, seed=7, sensors=ALL_SENSORS), 400)
    np.testing.assert_array_equal(base.values[:, :, :4], more.values[:, :, :4])


def test_devices_differ_in_scale() -> None:
    run = simulate_plant(PlantConfig(n_devices=10), 2000)
    means = run.values.mean(axis=1)  # (device, sensor)
    assert (means.max(axis=0) / means.min(axis=0) > 1.2).all()


def test_couplings_exposed() -> None:
    plant = Plant(PlantConfig(sensors=ALL_SENSORS))
    assert ("current", "flow", 1) in plant.couplings
    assert ("flow", "pressure", 1) in plant.couplings
    assert ("flow", "vibration", 2) in plant.couplings
    assert Plant(PlantConfig(sensors=("current", "pressure"))).couplings == []


def test_couplings_are_real_and_directed() -> None:
    cfg = PlantConfig(n_devices=3, sensors=ALL_SENSORS, seed=3)
    run = simulate_plant(cfg, 5000)
    idx = {s: j for j, s in enumerate(run.sensors)}
    for dev in range(3):
        x = run.values[dev]
        for drv, dst, lag in run.couplings:
            forward = _lagged_gain(x, idx[drv], idx[dst], lag)
            backward = _lagged_gain(x, idx[dst], idx[drv], lag)
            assert forward > 0.02, (drv, dst, forward)
            assert forward > 10 * backward, (drv, dst, forward, backward)
        # The strongest coupling explains a large share of the innovation.
        assert _lagged_gain(x, idx["current"], idx["flow"], 1) > 0.3


def test_daily_cycle_visible() -> None:
    cfg = PlantConfig(n_devices=2, day_length=200, seed=1)
    run = simulate_plant(cfg, 2000)
    cur = run.values[0, :, 0]
    cur = cur - cur.mean()
    # Autocorrelation at one day exceeds that at half a day (opposite phase).
    day, half = (float(np.corrcoef(cur[:-k], cur[k:])[0, 1]) for k in (200, 100))
    assert day > 0.3 > half


def _one_fault(kind: str, sensor: str = "flow", **kw: Any) -> FaultSpec:
    start, end = (500, 502) if kind == "spike" else (500, 600)
    return FaultSpec("pump-001", (sensor,), kind, start, end, **kw)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_changes_only_its_window(kind: str) -> None:
    cfg = PlantConfig(n_devices=4, seed=11, sensors=ALL_SENSORS)
    clean = simulate_plant(cfg, 1000)
    spec = _one_fault(kind, source="pump-002:flow" if kind == "cross_talk" else None)
    run = simulate_plant(cfg, 1000, FaultPlan((spec,)))
    j = run.sensors.index("flow")
    diff = run.values - clean.values
    window = np.zeros(1000, dtype=bool)
    window[spec.start : spec.end] = True
    # Nothing changes outside the window, nor on other devices or sensors.
    assert not diff[:, ~window].any()
    others = np.ones(diff.shape, dtype=bool)
    others[1, :, j] = False
    assert not diff[others].any()
    # Inside, the change is large compared with the local noise.
    sigma = np.std(np.diff(clean.values[1, :, j])) / np.sqrt(2)
    inside = np.abs(diff[1, window, j])
    assert inside.max() > 3 * sigma, (kind, inside.max() / sigma)
    assert run.truth_mask("pump-001").sum() == spec.end - spec.start
    assert not run.truth_mask("pump-000").any()
    (fault,) = run.faults
    assert (fault.kind, fault.start, fault.end) == (kind, spec.start, spec.end)
    assert fault.start_ts == run.timestamps[spec.start]
    assert fault.end_ts == run.timestamps[spec.end]


def test_fault_kind_semantics() -> None:
    cfg = PlantConfig(n_devices=3, seed=5)
    clean = simulate_plant(cfg, 1000).values
    j = cfg.sensors.index("flow")
    plan = [
        FaultSpec("pump-000", ("flow",), "stuck", 300, 400),
        FaultSpec("pump-001", ("flow",), "spike", 300, 301, magnitude=8.0),
        FaultSpec("pump-002", ("flow",), "drift", 300, 400, magnitude=10.0),
    ]
    v = simulate_plant(cfg, 1000, plan).values
    assert (v[0, 300:400, j] == clean[0, 299, j]).all()
    sigma = np.std(np.diff(clean[1, :, j])) / np.sqrt(2)
    assert v[1, 300, j] - clean[1, 300, j] == pytest.approx(8.0 * sigma)
    ramp = v[2, 300:400, j] - clean[2, 300:400, j]
    assert (np.diff(ramp) > 0).all()


def test_decoupling_breaks_the_lagged_dependency() -> None:
    cfg = PlantConfig(n_devices=1, seed=2)
    spec = FaultSpec("pump-000", ("flow",), "decoupling", 1000, 3000)
    run = simulate_plant(cfg, 4000, [spec])
    x = run.values[0, 1000:3000]
    clean = simulate_plant(cfg, 4000).values[0, 1000:3000]
    assert _lagged_gain(clean, 0, 1, 1) > 0.3
    assert _lagged_gain(x, 0, 1, 1) < 0.02
    # Same level and spread as before: it is the relationship that broke.
    assert abs(x[:, 1].mean() - clean[:, 1].mean()) < clean[:, 1].std()
    assert 0.3 < x[:, 1].std() / clean[:, 1].std() < 3.0
    assert run.faults[0].source == "current"


def test_random_faults_respect_warmup_and_gaps() -> None:
    plant = Plant(PlantConfig(n_devices=5, seed=4))
    plan = plant.random_faults(30, 5000, min_gap=40, duration=(20, 100))
    assert len(plan) == 30
    assert {s.kind for s in plan} == set(FAULT_KINDS)
    per_dev: dict[str, list[tuple[int, int]]] = {}
    for s in plan:
        assert s.start >= 1500 and s.end <= 5000
        per_dev.setdefault(s.device, []).append((s.start, s.end))
    for spans in per_dev.values():
        spans.sort()
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            assert s2 >= e1 + 40
    assert plan == plant.random_faults(30, 5000, min_gap=40, duration=(20, 100))
    run = plant.simulate(5000, plan)
    assert len(run.faults) == 30
    assert not any(run.truth_mask(d)[:1500].any() for d in run.devices)


def test_faults_do_not_shift_random_streams() -> None:
    plant = Plant(PlantConfig(n_devices=5, seed=9))
    plan = plant.random_faults(10, 3000)
    faulty = plant.simulate(3000, plan)
    clean = plant.simulate(3000)
    for i, dev in enumerate(faulty.devices):
        keep = ~faulty.truth_mask(dev)
        np.testing.assert_array_equal(faulty.values[i, keep], clean.values[i, keep])


def test_truth_json_round_trip() -> None:
    plant = Plant(PlantConfig(n_devices=4, seed=1))
    run = plant.simulate(2000, plant.random_faults(8, 2000))
    truth = orjson.loads(orjson.dumps(run.to_truth_json()))
    assert faults_from_truth_json(truth) == run.faults
    assert [tuple(c) for c in truth["couplings"]] == run.couplings
    assert truth["n_ticks"] == 2000 and truth["devices"] == run.devices
    assert all(isinstance(f, Fault) for f in faults_from_truth_json(truth))


def test_readings_and_batches_order() -> None:
    run = simulate_plant(PlantConfig(n_devices=2, seed=0), 3)
    readings = list(run.readings())
    assert len(readings) == 2 * 3 * 4
    assert readings[0] == {
        "device": "pump-000",
        "sensor": "current",
        "ts": run.timestamps[0],
        "value": run.values[0, 0, 0],
    }
    assert [r["sensor"] for r in readings[:5]] == [*run.sensors, "current"]
    assert readings[4]["device"] == "pump-001"
    assert readings[8]["ts"] == run.timestamps[1]
    assert all(type(r["value"]) is float for r in readings)
    batches = list(run.batches())
    assert len(batches) == 6
    assert batches[1]["device"] == "pump-001"
    assert batches[1]["values"]["flow"] == run.values[1, 0, 1]


def test_bad_specs_rejected() -> None:
    with pytest.raises(ValueError):
        FaultSpec("pump-000", ("flow",), "melt", 1, 2)
    with pytest.raises(ValueError):
        simulate_plant(SMALL, 100, [FaultSpec("pump-999", ("flow",), "spike", 1, 2)])
    with pytest.raises(ValueError):
        simulate_plant(SMALL, 100, [FaultSpec("pump-000", ("current",), "decoupling", 1, 20)])
    with pytest.raises(ValueError):
        PlantConfig(sensors=("current", "torque"))


def test_speed_20_devices_5000_ticks() -> None:
    cfg = PlantConfig()
    plant = Plant(cfg)
    plan = plant.random_faults(20, 5000)
    t0 = time.perf_counter()
    run = plant.simulate(5000, plan)
    elapsed = time.perf_counter() - t0
    print(f"simulate 20 x 5000 with 20 faults: {elapsed * 1000:.0f} ms")
    assert run.values.shape == (20, 5000, 4)
    assert elapsed < 1.0


def test_write_files(tmp_path: Path) -> None:
    plant = Plant(PlantConfig(n_devices=3, seed=2))
    run = plant.simulate(200, plant.random_faults(2, 200, duration=(5, 20)))
    logs = simulate_oplogs(n_users=2, n_events=100, seed=1, faults=["brute_force"])
    paths = write_files(run, logs, tmp_path / "out")
    assert set(paths) == {"readings", "logs", "truth"}
    lines = paths["readings"].read_bytes().splitlines()
    assert len(lines) == 3 * 200 * 4
    assert orjson.loads(lines[0]) == next(run.readings())
    log_lines = paths["logs"].read_bytes().splitlines()
    assert [orjson.loads(x) for x in log_lines] == logs.events
    truth = orjson.loads(paths["truth"].read_bytes())
    assert faults_from_truth_json(truth["plant"]) == run.faults
    assert truth["logs"]["faults"][0]["kind"] == "brute_force"

    paths = write_files(run, None, tmp_path / "b", batched=True)
    assert set(paths) == {"batches", "truth"}
    first = orjson.loads(paths["batches"].read_bytes().splitlines()[0])
    assert first == next(run.batches())
    assert orjson.loads(paths["truth"].read_bytes())["logs"] is None


class _FakeProducer:
    """Stands in for ``confluent_kafka.Producer``: delivers on poll, fails on demand."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self._pending: list[Any] = []
        self._fail_at = fail_at

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        err = "broker down" if len(self.sent) == self._fail_at else None
        self.sent.append((topic, key, value))
        self._pending.append((on_delivery, err))

    def poll(self, _timeout: float) -> int:
        pending, self._pending = self._pending, []
        for cb, err in pending:
            cb(err, None)
        return len(pending)

    def flush(self, _timeout: float) -> int:
        self.poll(0)
        return 0


def test_send_to_kafka_with_fake_producer() -> None:
    run = simulate_plant(PlantConfig(n_devices=2), 5)
    fake = _FakeProducer()
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    n = send_to_kafka(
        plant_messages(run, "readings"),
        "unused:9092",
        rate=100.0,
        producer_factory=lambda *_: fake,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert n == len(fake.sent) == 2 * 5 * 4
    assert fake.sent[0][1] == b"pump-000"
    assert orjson.loads(fake.sent[0][2])["sensor"] == "current"
    assert now[0] == pytest.approx((n - 1) / 100.0)  # paced, not bursted
    with pytest.raises(DeliveryError):
        send_to_kafka(
            plant_messages(run, "readings"),
            "unused:9092",
            producer_factory=lambda *_: _FakeProducer(fail_at=3),
        )


def test_tick_batches_hold_every_reading_once_in_order() -> None:
    run = simulate_plant(SMALL, 23)
    singles = [(r["device"], r["sensor"], r["ts"], r["value"]) for r in run.readings()]
    msgs = list(run.tick_batches(5))
    assert len(msgs) == 4 * 5  # ceil(23 / 5) messages per device
    assert all(len(m["ticks"]) == 5 for m in msgs[:-4]) and len(msgs[-1]["ticks"]) == 3
    unpacked = [
        (m["device"], s, tick["ts"], v)
        for m in msgs
        for tick in m["ticks"]
        for s, v in tick["values"].items()
    ]
    assert sorted(unpacked) == sorted(singles)
    with pytest.raises(ValueError):
        next(run.tick_batches(0))
