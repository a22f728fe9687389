"""Throughput of GrangerMonitor: updates per second for 4, 8 and 16 sensors at p = 3.

Each configuration streams a stable coupled VAR (a chain of couplings) through a fresh
monitor; the warm-up and the monitoring phase are timed separately (the monitoring phase
includes the residual check, screen points every 10 samples and full sweeps every 100).
The median of 3 runs is reported.

Usage: ``python bench/bench_granger.py [--json] [--samples N]``.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--samples", type=int, default=5000, help="monitored samples per run")
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--lag", type=int, default=3)
    args = ap.parse_args()
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
