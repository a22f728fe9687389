"""GrangerMonitor on simulated coupled plants: detection rate, delay, false alarms.

A self-contained pump-like VAR (no dependency on ``stream/simulate``):
``current -> flow -> pressure`` and ``current -> temperature`` with random lags, AR
coefficients and coupling gains per seed, in physical units. A decoupling replaces the
*measured* driven sensor, from ``t0`` on, by an independent AR(1) process with the
pre-fault mean, variance and lag-1 autocorrelation (the physics keeps running).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.causality import GrangerMonitor

SENSORS = ["current", "flow", "pressure", "temperature"]
#: (driver, driven) of the plant.
COUPLINGS = [(0, 1), (1, 2), (0, 3)]
MEAN = np.array([30.0, 120.0, 6.0, 55.0])
SCALE = np.array([2.0, 8.0, 0.4, 1.5])

PARAMS: dict[str, Any] = {"lag": 3, "window": 200, "warmup": 2000}


def plant(seed: int, n: int, decouple: int | None = None, t0: int = 0) -> np.ndarray:
    """``n`` samples of the plant; sensor ``decouple`` is faked from ``t0`` on."""
    rng = np.random.default_rng(seed)
    d = len(SENSORS)
    phi = rng.uniform(0.3, 0.8, d)
    gain = {c: rng.uniform(0.6, 1.2) * rng.choice([-1.0, 1.0]) for c in COUPLINGS}
    delay = {c: int(rng.integers(1, 4)) for c in COUPLINGS}
    x = np.zeros((n + 10, d))
    e = rng.normal(size=(n + 10, d))
    for t in range(3, n + 10):
        x[t] = phi * x[t - 1] + e[t]
        for (i, j), g in gain.items():
            x[t, j] += g * x[t - delay[(i, j)], i]
    y = MEAN + SCALE * x[10:] / x[10:].std(axis=0)
    if decouple is not None:
        before = y[:t0, decouple]
        mu, sd = before.mean(), before.std()
        rho = np.corrcoef(before[1:], before[:-1])[0, 1]
        fake = np.zeros(n - t0)
        fake[0] = rng.normal()
        for t in range(1, n - t0):
            fake[t] = rho * fake[t - 1] + np.sqrt(1 - rho**2) * rng.normal()
        y[t0:, decouple] = mu + sd * fake
    return y


def run(mon: GrangerMonitor, y: np.ndarray) -> list:
    return [f for row in y for f in mon.update(row)]


def test_plant_edges_are_found_and_watched() -> None:
    mon = GrangerMonitor(SENSORS, **PARAMS)
    run(mon, plant(0, PARAMS["warmup"]))
    edges = {(e["cause"], e["effect"]) for e in mon.baseline_graph() if e["watched"]}
    for i, j in COUPLINGS:
        assert (SENSORS[i], SENSORS[j]) in edges


@pytest.mark.slow
def test_decoupling_detection_rate_and_delay() -> None:
    runs, t0, n = 40, 3000, 4000
    detected, delays, watched_true = 0, [], 0
    for seed in range(runs):
        driven = [1, 2, 3][seed % 3]
        y = plant(100 + seed, n, decouple=driven, t0=t0)
        mon = GrangerMonitor(SENSORS, **PARAMS)
        found = run(mon, y)
        watched_true += any(
            e["watched"] and SENSORS[driven] in (e["cause"], e["effect"])
            for e in mon.baseline_graph()
        )
        hits = [
            f.ts_index - t0
            for f in found
            if f.kind == "decoupling"
            and f.ts_index >= t0
            and SENSORS[driven] in (f.cause, f.effect)
        ]
        if hits:
            detected += 1
            delays.append(min(hits))
    rate = detected / runs
    med = float(np.median(delays)) if delays else float("nan")
    print(
        f"\ndecoupling: detected {detected}/{runs} = {rate:.1%}, median delay {med:.0f} "
        f"samples (p90 {np.percentile(delays, 90):.0f}), runs with a watched faulty edge "
        f"{watched_true}/{runs}"
    )
    assert rate >= 0.95
    assert med < 300


@pytest.mark.slow
def test_fault_free_false_alarm_rate() -> None:
    n = 12_000
    pair_samples, false_dec, false_new, false_res, sensor_samples = 0, 0, 0, 0, 0
    seed = 0
    while pair_samples < 100_000 or seed < 10:
        mon = GrangerMonitor(SENSORS, **PARAMS)
        found = run(mon, plant(1000 + seed, n))
        post = n - PARAMS["warmup"]
        pair_samples += mon.watched_pairs() * post
        sensor_samples += len(SENSORS) * post
        false_dec += sum(f.kind == "decoupling" for f in found)
        false_new += sum(f.kind == "new_link" for f in found)
        false_res += sum(f.kind == "residual" for f in found)
        seed += 1
    rate = false_dec / pair_samples * 1e5
    print(
        f"\nfault-free: {seed} runs, {pair_samples} watched pair-samples, "
        f"{false_dec} decoupling alarms = {rate:.2f} per 1e5 pair-samples; "
        f"{false_new} new_link alarms over {seed * 12} pairs; "
        f"{false_res} residual alarms over {sensor_samples} sensor-samples"
    )
    assert rate <= 1.0
