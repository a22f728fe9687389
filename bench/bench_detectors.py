"""Throughput of every registered detector, next to River's HST and GaussianScorer.

For each detector in :func:`detectors.available` (with its ``conformance_params`` when
it has them, else its defaults) this measures, on synthetic Gaussian data with ``d``
channels, one-at-a-time (``score_learn_one``) and batch (``score_learn_many``)
throughput, repeated ``--repeats`` times; medians are printed with the ratio to River's
``anomaly.HalfSpaceTrees(n_trees=25, height=15, window_size=250)`` driven one at a time
(``score_one`` then ``learn_one``, inputs scaled to [0, 1]) over whole windows, so its
swap of every node's masses once per window is counted. River's
``anomaly.GaussianScorer`` (univariate: it sees channel 0) is listed for reference.

"values/s" counts observations × channels per second; "obs/s" counts observations.

Run: ``.venv/bin/python bench/bench_detectors.py`` (about two minutes on 2 cores),
``--quick`` for a smaller run, ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import registry
from detectors.base import Detector


def make(name: str) -> Detector:
    cls = registry.get(name)
    hook = getattr(cls, "conformance_params", None)
    params = hook() if callable(hook) else {}
    if name == "seasonal":
        params = {"period": 100, **params}
    return cls(**params)


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_detector(name: str, X: np.ndarray, n_one: int) -> tuple[float, float]:
    """Seconds per observation: one at a time (on ``n_one`` rows) and in batch."""
    det = make(name)
    rows = X[:n_one]
    one = timed(lambda: [det.score_learn_one(r) for r in rows]) / len(rows)
    det = make(name)
    batch = timed(lambda: det.score_learn_many(X)) / len(X)
    return one, batch


#: River's HST window: its timed rows are whole windows.
RIVER_WINDOW = 250


def bench_river(X: np.ndarray, n_one: int) -> dict[str, float]:
    from river import anomaly

    scaled = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    # Timed rows are whole windows after the first: River swaps the two mass counts of
    # every node (25 x 65,535 at height 15) once per window, so fewer rows than a window
    # would leave that swap out (a row without it costs about an eighth of the average).
    warm = [dict(enumerate(r)) for r in scaled[:RIVER_WINDOW]]
    rows = [dict(enumerate(r)) for r in scaled[RIVER_WINDOW : RIVER_WINDOW + n_one]]
    hst = anomaly.HalfSpaceTrees(n_trees=25, height=15, window_size=RIVER_WINDOW, seed=0)
    for x in warm:  # untimed: tree construction and the first window
        hst.score_one(x)
        hst.learn_one(x)

    def run_hst() -> None:
        for x in rows:
            hst.score_one(x)
            hst.learn_one(x)

    gauss = anomaly.GaussianScorer()
    values = [float(v) for v in X[:n_one, 0]]

    def run_gauss() -> None:
        for v in values:
            gauss.score_one(None, v)
            gauss.learn_one(None, v)

    return {
        "river_hst": timed(run_hst) / len(rows),
        "river_gaussian": timed(run_gauss) / len(values),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller data, one repeat")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--d", type=int, default=8, help="channels (default 8)")
    ap.add_argument("--n", type=int, default=None, help="rows for batch runs")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="detector names to run")
    args = ap.parse_args(argv)
    n = args.n or (1500 if args.quick else 5000)
    n_one = min(n, 500 if args.quick else 1500)
    n_river = RIVER_WINDOW * (1 if args.quick else 2)  # whole windows: see bench_river
    repeats = args.repeats or (1 if args.quick else 3)
    d = args.d
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)) + 10.0
    names = [k for k in registry.available() if args.only is None or k in args.only]
    # Detectors of other data (log events, causality) may not take float vectors.
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        ones, batches = [], []
        try:
            for _ in range(repeats):
                one, batch = bench_detector(name, X, n_one)
                ones.append(one)
                batches.append(batch)
        except Exception as exc:  # report, do not hide
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        results[name] = {"one_s": statistics.median(ones), "batch_s": statistics.median(batches)}
    river_runs = [bench_river(X, n_river) for _ in range(repeats)]
    river = {k: statistics.median(r[k] for r in river_runs) for k in river_runs[0]}
    ref = river["river_hst"]
    meta = {
        "d": d,
        "rows_batch": n,
        "rows_one": n_one,
        "rows_river": n_river,
        "repeats": repeats,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    rows_out = []
    for name, r in results.items():
        if "error" in r:
            rows_out.append({"name": name, "error": r["error"]})
            continue
        rows_out.append(
            {
                "name": name,
                "obs_per_s_one": 1.0 / r["one_s"],
                "obs_per_s_batch": 1.0 / r["batch_s"],
                "values_per_s_one": d / r["one_s"],
                "values_per_s_batch": d / r["batch_s"],
                "one_vs_river_hst": ref / r["one_s"],
                "batch_vs_river_hst": ref / r["batch_s"],
            }
        )
    for key, width in (("river_hst", d), ("river_gaussian", 1)):
        rows_out.append(
            {
                "name": key,
                "obs_per_s_one": 1.0 / river[key],
                "values_per_s_one": width / river[key],
                "one_vs_river_hst": ref / river[key],
            }
        )
    if args.json:
        print(json.dumps({"meta": meta, "results": rows_out}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Detector throughput, d={d}, median of {repeats} (shared 2-core box)")
    for col in (
        "detector",
        "obs/s one",
        "values/s one",
        "obs/s batch",
        "values/s batch",
        "one ÷ River HST",
        "batch ÷ River HST",
    ):
        table.add_column(col, justify="right" if col != "detector" else "left")

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"

    for r in rows_out:
        if "error" in r:
            table.add_row(r["name"], "n/a: not a float-vector detector", "", "", "", "", "")
            continue
        table.add_row(
            r["name"],
            fmt(r.get("obs_per_s_one")),
            fmt(r.get("values_per_s_one")),
            fmt(r.get("obs_per_s_batch")),
            fmt(r.get("values_per_s_batch")),
            f"{r['one_vs_river_hst']:.1f}×",
            f"{r['batch_vs_river_hst']:.1f}×" if "batch_vs_river_hst" in r else "-",
        )
    console = Console(width=150)
    console.print(table)
    console.print(meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
