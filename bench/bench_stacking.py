"""Univariate detectors stacked across keys (:mod:`detectors.stacking`) vs key by key.

``--keys`` devices of ``--d`` sensors, each with its own detector warmed up on 200 rows;
a "batch" brings every key ``R`` rows (R = 1: one tick per device per batch, as with
one-reading messages from many devices). Side by side in one run, each the median of
``--repeats``: the keys' detectors called one by one (``surprise_learn_many`` per key,
the pipeline's path before stacking), stacked per batch (one call per row for all keys,
gathering and scattering each key's arrays included: the pipeline's path before
session 16) and stacked in a :class:`~detectors.stack_pool.StackPool` (the state
stays stacked between batches; the pipeline's path now). The three run on copies of
the same warmed-up keys, alternating. "values/s" = keys × d × R / seconds.

    .venv/bin/python bench/bench_stacking.py [--keys 1000] [--d 4] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

import detectors
from detectors.base import UnivariateDetector
from detectors.stack_pool import StackPool
from detectors.stacking import clone, prequential_stacked

DEFAULT = (
    "max_of (default)",
    "max_of",
    {"members": [{"name": "forecast", "params": {"order": 2}}, {"name": "flatline"}]},
)
CASES = [DEFAULT, ("forecast", "forecast", {}), ("robust_zscore", "robust_zscore", {})]


def run(
    label: str, name: str, params: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    keys: list[UnivariateDetector] = []
    for _ in range(args.keys):
        det = detectors.create(name, **params)
        assert isinstance(det, UnivariateDetector)
        det.learn_many(rng.normal(size=(200, args.d)))
        keys.append(det)
    per_batch, in_pool = clone(keys), clone(keys)
    pool = StackPool()
    pool.prequential(in_pool, [rng.normal(size=(1, args.d)) for _ in keys], surprise=True)
    rows = []
    for r in args.rows:
        batches = [[rng.normal(size=(r, args.d)) for _ in keys] for _ in range(args.repeats)]
        apart, together, pooled = [], [], []
        for batch in batches:  # alternate, so drift in machine load hits all alike
            t0 = time.perf_counter()
            for det, m in zip(keys, batch, strict=True):
                det.surprise_learn_many(m)
            apart.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            prequential_stacked(per_batch, batch, surprise=True)
            together.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pool.prequential(in_pool, batch, surprise=True)
            pooled.append(time.perf_counter() - t0)
        values = args.keys * args.d * r
        one, stacked = statistics.median(apart), statistics.median(together)
        kept = statistics.median(pooled)
        rows.append(
            {
                "detector": label,
                "rows_per_key": r,
                "one_by_one_values_per_s": values / one,
                "stacked_values_per_s": values / stacked,
                "pool_values_per_s": values / kept,
                "speedup": one / stacked,
                "pool_speedup": one / kept,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = [row for case in CASES for row in run(*case, args)]
    if args.json:
        print(json.dumps(out))
        return
    print(f"{args.keys} keys x {args.d} channels, median of {args.repeats}")
    print(
        f"{'detector':18} {'rows/key':>8} {'one by one':>12} {'per batch':>12} {'pool':>12} "
        f"{'speedup':>15}"
    )
    for row in out:
        print(
            f"{row['detector']:18} {row['rows_per_key']:>8} "
            f"{row['one_by_one_values_per_s']:>12,.0f} {row['stacked_values_per_s']:>12,.0f} "
            f"{row['pool_values_per_s']:>12,.0f} "
            f"{row['speedup']:>6.1f}x / {row['pool_speedup']:>5.1f}x"
        )


if __name__ == "__main__":
    main()
