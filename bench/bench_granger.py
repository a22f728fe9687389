"""Throughput of GrangerMonitor: updates per second for 4, 8 and 16 sensors at p = 3.

Each configuration streams a stable coupled VAR (a chain of couplings) through a fresh
monitor; the warm-up and the monitoring phase are timed separately (the monitoring phase
includes the residual check, screen points every 10 samples and full sweeps every 100).
The median of 3 runs is reported.

With ``--devices N`` it measures instead the checks of ``N`` devices run one by one and
stacked across devices (:mod:`detectors.causality.stacked`), as a worker's batch brings
them: each batch gives every device ``--rows`` rows. The devices' phases are staggered
(device ``i`` is ``i mod 10`` samples ahead), so their test points fall on different
samples, as in a real fleet. Both ways run side by side on copies of the same monitors.

Usage: ``python bench/bench_granger.py [--json] [--samples N] [--devices N --rows R]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import numpy as np

from detectors.causality import GrangerMonitor


def stream(d: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros((n, d))
    for t in range(1, n):
        y[t] = 0.5 * y[t - 1] + rng.normal(size=d)
        y[t, 1:] += 0.8 * y[t - 1, :-1]
    return y


def once(d: int, lag: int, warmup: int, n: int) -> tuple[float, float, int, int]:
    y = stream(d, warmup + n)
    mon = GrangerMonitor([f"s{i}" for i in range(d)], lag=lag, window=200, warmup=warmup)
    t0 = time.perf_counter()
    for row in y[:warmup]:
        mon.update(row)
    t1 = time.perf_counter()
    for row in y[warmup:]:
        mon.update(row)
    t2 = time.perf_counter()
    return warmup / (t1 - t0), n / (t2 - t1), mon.state_size(), mon.watched_pairs()


def fleet(d: int, devices: int, rows: int, monitoring: bool, n: int) -> tuple[float, float]:
    """Updates per second of ``devices`` monitors fed ``rows`` rows per batch, one by one
    and stacked, over ``n`` samples each."""
    from detectors.causality.stacked import update_stacked

    warm = 2000 if monitoring else 500  # past the baseline, or mid warm-up
    y = stream(d, warm + 10 + n)
    proto = GrangerMonitor([f"s{i}" for i in range(d)], lag=3, window=200, warmup=2000)
    for row in y[:warm]:
        proto.update(row)
    rng = np.random.default_rng(1)
    monitors = []
    for i in range(devices):
        mon = copy.deepcopy(proto)
        for row in y[warm : warm + i % 10]:
            mon.update(row)
        monitors.append(mon)
    data = [y[warm + 10 :] + rng.normal(scale=0.01, size=(n, d)) for _ in range(devices)]
    alone = copy.deepcopy(monitors)
    t0 = time.perf_counter()
    for b in range(0, n, rows):
        for mon, x in zip(alone, data, strict=True):
            for row in x[b : b + rows]:
                mon.update(row)
    t1 = time.perf_counter()
    for b in range(0, n, rows):
        update_stacked(monitors, [x[b : b + rows] for x in data])
    t2 = time.perf_counter()
    return devices * n / (t1 - t0), devices * n / (t2 - t1)


def main_fleet(args: argparse.Namespace) -> None:
    rows = []
    for d in (4, 8):
        for monitoring in (False, True):
            runs = [fleet(d, args.devices, args.rows, monitoring, args.samples) for _ in range(3)]
            alone = statistics.median(r[0] for r in runs)
            stacked = statistics.median(r[1] for r in runs)
            rows.append(
                {
                    "sensors": d,
                    "phase": "monitoring" if monitoring else "warm-up",
                    "devices": args.devices,
                    "rows_per_batch": args.rows,
                    "one_by_one_updates_per_s": alone,
                    "stacked_updates_per_s": stacked,
                    "ratio": statistics.median(r[1] / r[0] for r in runs),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.devices} devices, {args.rows} row(s) per device per batch, medians of 3")
    print(f"{'sensors':>7} {'phase':>10} {'one by one/s':>12} {'stacked/s':>10} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['sensors']:>7} {r['phase']:>10} {r['one_by_one_updates_per_s']:>12.0f} "
            f"{r['stacked_updates_per_s']:>10.0f} {r['ratio']:>6.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--samples", type=int, default=5000, help="monitored samples per run")
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--lag", type=int, default=3)
    ap.add_argument("--devices", type=int, default=0, help="measure N devices stacked")
    ap.add_argument("--rows", type=int, default=1, help="rows per device per batch")
    args = ap.parse_args()
    if args.devices:
        main_fleet(args)
        return
    rows = []
    for d in (4, 8, 16):
        runs = [once(d, args.lag, args.warmup, args.samples) for _ in range(3)]
        rows.append(
            {
                "sensors": d,
                "lag": args.lag,
                "pairs": d * (d - 1),
                "watched_pairs": runs[0][3],
                "warmup_updates_per_s": statistics.median(r[0] for r in runs),
                "updates_per_s": statistics.median(r[1] for r in runs),
                "state_bytes": runs[0][2],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'sensors':>7} {'pairs':>5} {'watched':>7} {'warm-up/s':>10} {'monitor/s':>10} {'state B':>8}"
    )
    for r in rows:
        print(
            f"{r['sensors']:>7} {r['pairs']:>5} {r['watched_pairs']:>7} "
            f"{r['warmup_updates_per_s']:>10.0f} {r['updates_per_s']:>10.0f} {r['state_bytes']:>8}"
        )


if __name__ == "__main__":
    main()
