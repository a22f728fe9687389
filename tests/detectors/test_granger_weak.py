"""GrangerMonitor's sequential (CUSUM) decoupling test on a weak, slow edge.

A self-contained pump-like generator (no dependency on ``stream/simulate``): a slow
``current`` (AR(1), 0.95) drives ``flow`` strongly and ``temperature`` weakly and slowly
(``temperature_t = 0.97 temperature_{t-1} + 0.03 current_{t-1} + noise``: partial R^2
about 0.15 at lag 3). A 200-row window cannot watch that edge, so before the sequential
test its decoupling went unseen. The decoupling feeds the temperature recursion an
independent look-alike of ``current`` from ``t0`` on (the physics of the sensor stays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.causality import GrangerMonitor

SENSORS = ["current", "flow", "temperature"]
PARAMS: dict[str, Any] = {"lag": 3, "window": 200, "warmup": 2000}


def weak_plant(seed: int, n: int, t0: int | None = None) -> np.ndarray:
    """``n`` samples in physical units; ``temperature`` decouples from ``t0`` on."""
    rng = np.random.default_rng(seed)
    cur, flow, temp, fake = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for t in range(1, n):
        cur[t] = 0.95 * cur[t - 1] + 0.3 * rng.normal()
        fake[t] = 0.95 * fake[t - 1] + 0.3 * rng.normal()
        flow[t] = 0.4 * cur[t - 1] + 0.6 * flow[t - 1] + 0.2 * rng.normal()
        drive = fake[t - 1] if t0 is not None and t >= t0 else cur[t - 1]
        temp[t] = 0.97 * temp[t - 1] + 0.03 * drive + 0.05 * rng.normal()
    y = np.column_stack([cur, flow, temp])
    return y * np.array([2.0, 8.0, 1.5]) + np.array([30.0, 120.0, 55.0])


def test_weak_edge_is_tested_but_not_window_watched() -> None:
    mon = GrangerMonitor(SENSORS, **PARAMS)
    for row in weak_plant(0, PARAMS["warmup"]):
        mon.update(row)
    graph = {(e["cause"], e["effect"]): e for e in mon.baseline_graph()}
    edge = graph[("current", "temperature")]
    assert edge["strength"] < 0.25 and not edge["watched"] and edge["tested"]
    assert graph[("current", "flow")]["watched"] and graph[("current", "flow")]["tested"]


def test_weak_edge_decoupling_is_detected() -> None:
    t0, n, delays = 2600, 3200, []
    for seed in range(6):
        mon = GrangerMonitor(SENSORS, **PARAMS)
        found = [f for row in weak_plant(seed, n, t0) for f in mon.update(row)]
        dec = [f for f in found if f.kind == "decoupling"]
        assert all(f.ts_index >= t0 and f.effect == "temperature" for f in dec)
        hits = [f.ts_index - t0 for f in dec if f.cause == "current"]
        assert hits, f"seed {seed}: decoupling of current -> temperature missed"
        assert all(f.score > 0.999 for f in dec)
        delays.append(min(hits))
    assert float(np.median(delays)) < 300 and max(delays) < 500


def test_weak_edge_fault_free_runs_are_quiet() -> None:
    for seed in range(100, 104):
        mon = GrangerMonitor(SENSORS, **PARAMS)
        found = [f for row in weak_plant(seed, 6000) for f in mon.update(row)]
        assert not [f for f in found if f.kind == "decoupling"]
