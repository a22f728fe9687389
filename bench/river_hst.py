"""The default detector next to River's HalfSpaceTrees: speed, and quality on the harness.

The performance issue's anchor is River's ``anomaly.HalfSpaceTrees(n_trees=25,
height=15, window_size=250)``. Two things are measured side by side in one run:

**Speed** (``d`` channels per device, values/s = rows × d / s):

* River's HST one row at a time (``score_one`` then ``learn_one``; inputs already in
  ``[0, 1]``, so no scaler is timed). Every ``window_size`` rows it swaps its two mass
  counts on every node: ``25 × 65,535`` nodes at height 15, in Python. Rounds of whole
  windows give its *amortised* cost; the median row (a row without the swap) is printed
  too, because an anchor timed on fewer rows than a window misses the swap.
* The default detector (``max_of`` forecast(2) + flatline, the shipped
  ``sensor_detector``) as the pipeline runs it: ``--keys`` devices in a
  :class:`~detectors.stack_pool.StackPool`, one row per device per batch; and one
  device at a time (``surprise_learn_many`` on one row), as a library user without
  batches would.

Rounds alternate, so drift in machine load hits both alike.

**Quality** (``--quality``, needs ``$VIGIL_DATASETS`` or ``../shared/datasets``):

* NAB: each file streamed through River's own ``preprocessing.MinMaxScaler() |
  anomaly.HalfSpaceTrees(...)`` (score, then learn), scored by Vigil's NAB scorer
  exactly as ``vigil evaluate nab`` scores the pipeline: threshold optimised per
  profile over the corpus, with the harness's 300-point hold and without. One tree
  structure (seed 0) is built once; its masses are zeroed before each file, which is
  what a fresh instance with the same seed holds.
* SKAB (valve1, outlier protocol): River's pipeline on each experiment's 8 sensors, the
  first 400 rows learned and not counted. Neither detector's scores are calibrated to
  the same threshold, so both are compared at their best pooled threshold (F1, and the
  FAR / MAR there), and at the best threshold with FAR ≤ 15 %.
* The default detector runs through the pipeline core (``stream.evaluate``) on the same
  files in the same run.

    .venv/bin/python bench/river_hst.py [--d 8] [--keys 1000] [--rounds 5] [--quality] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import detectors
from detectors.base import UnivariateDetector
from detectors.stack_pool import StackPool
from detectors.stacking import clone

N_TREES, HEIGHT, WINDOW = 25, 15, 250


def river_hst(seed: int = 0) -> Any:
    from river import anomaly

    return anomaly.HalfSpaceTrees(n_trees=N_TREES, height=HEIGHT, window_size=WINDOW, seed=seed)


def default_detector() -> UnivariateDetector:
    from stream.settings import Settings

    spec = Settings().sensor_detector
    det = detectors.create(spec.name, **spec.params)
    assert isinstance(det, UnivariateDetector)
    return det


# -- speed -----------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    d = args.d
    hst = river_hst()
    unit = rng.random((WINDOW * (2 + args.rounds), d))
    rows = [dict(enumerate(map(float, r))) for r in unit]
    t0 = time.perf_counter()
    for x in rows[: 2 * WINDOW]:  # untimed: the trees' construction and two windows
        hst.score_one(x)
        hst.learn_one(x)
    build_s = time.perf_counter() - t0

    keys = []
    for _ in range(args.keys):
        det = default_detector()
        det.learn_many(rng.normal(size=(200, d)))
        keys.append(det)
    pooled = clone(keys)
    pool = StackPool()
    pool.prequential(pooled, [rng.normal(size=(1, d)) for _ in keys], surprise=True)
    single = keys[0]

    river_round, river_rows, pool_round, one_round = [], [], [], []
    for k in range(args.rounds):
        window = rows[(2 + k) * WINDOW : (3 + k) * WINDOW]  # one whole window: one swap
        per_row = []
        start = time.perf_counter()
        for x in window:
            t = time.perf_counter()
            hst.score_one(x)
            hst.learn_one(x)
            per_row.append(time.perf_counter() - t)
        river_round.append((time.perf_counter() - start) / len(window))
        river_rows.append(statistics.median(per_row))

        batch = [rng.normal(size=(1, d)) for _ in keys]
        t = time.perf_counter()
        pool.prequential(pooled, batch, surprise=True)
        pool_round.append((time.perf_counter() - t) / len(keys))

        ones = rng.normal(size=(WINDOW, 1, d))
        t = time.perf_counter()
        for m in ones:
            single.surprise_learn_many(m)
        one_round.append((time.perf_counter() - t) / len(ones))

    river_s = statistics.median(river_round)
    out = {
        "d": d,
        "keys": args.keys,
        "rounds": args.rounds,
        "river_build_s": build_s,
        "river_values_per_s": d / river_s,
        "river_values_per_s_row_without_swap": d / statistics.median(river_rows),
        "default_pool_values_per_s": d / statistics.median(pool_round),
        "default_one_values_per_s": d / statistics.median(one_round),
    }
    out["pool_vs_river"] = out["default_pool_values_per_s"] / out["river_values_per_s"]
    out["one_vs_river"] = out["default_one_values_per_s"] / out["river_values_per_s"]
    return out


# -- quality ---------------------------------------------------------------------------
def _reset(hst: Any) -> None:
    """Zero every node's masses: the state of a fresh instance with the same seed."""
    for nodes in hst._tree_nodes:
        for node in nodes:
            node.l_mass = 0
            node.r_mass = 0
    hst.counter = 0
    hst._first_window = True


def _river_scores(hst: Any, values: np.ndarray) -> np.ndarray:
    """River's ``MinMaxScaler() | hst`` over the rows of ``values``, score then learn."""
    from river import preprocessing

    _reset(hst)
    model = preprocessing.MinMaxScaler() | hst
    out = np.empty(len(values))
    for i, row in enumerate(values):
        x = dict(enumerate(map(float, row)))
        out[i] = model.score_one(x)
        model.learn_one(x)
    return out


def _built(d: int) -> Any:
    hst = river_hst()
    hst.learn_one(dict.fromkeys(range(d), 0.5))  # builds the trees; _reset undoes the count
    return hst


def nab_quality(data: Path) -> dict[str, Any]:
    from stream.evaluate import nab
    from stream.evaluate import nab_scoring as ns
    from stream.settings import Settings

    profiles = ns.load_profiles(data / "profiles.json")
    t = time.perf_counter()
    ours, _ = nab.evaluate(data, Settings())
    ours_s = time.perf_counter() - t
    files, n_windows = nab.load_corpus(data)
    hst = _built(1)
    t = time.perf_counter()
    scores = {f.key: _river_scores(hst, f.values[:, None]) for f in files}
    river_s = time.perf_counter() - t
    zeros = {f.key: np.zeros(len(f.ts)) for f in files}
    run = nab.NabRun(files, n_windows, scores, zeros, river_s)
    river = nab.score(run, profiles)
    keys = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

    def pick(res: dict[str, Any]) -> dict[str, Any]:
        return {
            "optimised_hold_300": {k: res[k] for k in keys},
            "plain_sweep": {k: res["no_hold"][k] for k in keys},
            "windows_hit": res["standard_detected_windows"],
            "false_positives": res["standard_false_positives"],
        }

    return {
        "default": {**pick(ours), "seconds": ours_s},
        "river_hst": {**pick(river), "seconds": river_s},
        "windows": n_windows,
    }


def _best(scores: np.ndarray, truth: np.ndarray, max_far: float = 1.0) -> dict[str, float]:
    """The pooled confusion at the threshold with the best F1 (FAR at most ``max_far``)."""
    from stream.evaluate.skab import confusion

    best: dict[str, float] = {"f1": 0.0, "far": 0.0, "mar": 1.0, "threshold": float("inf")}
    for th in np.unique(np.quantile(scores, np.linspace(0.0, 1.0, 401))):
        c = confusion(scores >= th, truth)
        if c["far"] <= max_far and c["f1"] > best["f1"]:
            best = {"f1": c["f1"], "far": c["far"], "mar": c["mar"], "threshold": float(th)}
    return best


def skab_quality(data: Path) -> dict[str, Any]:
    from stream.evaluate import skab
    from stream.evaluate.runner import run_messages
    from stream.settings import Settings

    exps = skab.load(data)
    scored = run_messages(Settings(), skab.messages(exps))
    hst = _built(len(exps[0].sensors))
    ours, river, truth = [], [], []
    t = time.perf_counter()
    for e in exps:
        by_sensor = scored.scores[e.name]
        mat = np.array([[s for _, s in by_sensor[name]] for name in e.sensors]).T
        ours.append(mat.max(axis=1)[skab.TRAIN_ROWS :])
        river.append(_river_scores(hst, e.values)[skab.TRAIN_ROWS :])
        truth.append(e.labels[skab.TRAIN_ROWS :].astype(bool))
    river_s = time.perf_counter() - t
    y = np.concatenate(truth)
    out: dict[str, Any] = {"rows_scored": len(y), "river_seconds": river_s}
    for name, s in (("default", np.concatenate(ours)), ("river_hst", np.concatenate(river))):
        out[name] = {"best": _best(s, y), "best_far_15": _best(s, y, 0.15)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=8, help="channels per device")
    ap.add_argument("--keys", type=int, default=1000, help="devices in the pool")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (one River window each)")
    ap.add_argument("--quality", action="store_true", help="also NAB and SKAB (minutes)")
    ap.add_argument("--data", type=Path, default=None, help="datasets folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "speed": speed(args),
    }
    if args.quality:
        root = args.data or Path(os.environ.get("VIGIL_DATASETS", "../shared/datasets"))
        out["nab"] = nab_quality(root / "nab")
        out["skab"] = skab_quality(root / "skab" / "valve1")
    if args.json:
        print(json.dumps(out, indent=2))
        return
    s = out["speed"]
    print(f"{out['machine']}; {s['d']} channels per device, median of {s['rounds']} rounds")
    print(f"River HST (25 trees, height 15) built and warmed in {s['river_build_s']:.1f} s")
    print(f"{'':44} {'values/s':>12} {'vs River':>9}")
    for label, key, ratio in (
        ("River HST, amortised over whole windows", "river_values_per_s", None),
        ("River HST, a row without the window swap", "river_values_per_s_row_without_swap", None),
        (
            f"default, {s['keys']} devices pooled, 1 row each",
            "default_pool_values_per_s",
            "pool_vs_river",
        ),
        ("default, one device, one row at a time", "default_one_values_per_s", "one_vs_river"),
    ):
        r = f"{s[ratio]:.1f}x" if ratio else ""
        print(f"{label:44} {s[key]:>12,.0f} {r:>9}")
    if "nab" in out:
        print("\nNAB (standard / low FP / low FN)")
        for name in ("default", "river_hst"):
            r = out["nab"][name]
            o, p = r["optimised_hold_300"], r["plain_sweep"]
            print(
                f"  {name:10} optimised, hold 300: {o['standard']:.1f} / "
                f"{o['reward_low_FP_rate']:.1f} / {o['reward_low_FN_rate']:.1f}   plain sweep: "
                f"{p['standard']:.1f} / {p['reward_low_FP_rate']:.1f} / "
                f"{p['reward_low_FN_rate']:.1f}   windows {r['windows_hit']}/"
                f"{out['nab']['windows']}, FPs {r['false_positives']}, {r['seconds']:.0f} s"
            )
        print(f"\nSKAB valve1 ({out['skab']['rows_scored']} rows scored; best pooled threshold)")
        for name in ("default", "river_hst"):
            b, c = out["skab"][name]["best"], out["skab"][name]["best_far_15"]
            print(
                f"  {name:10} F1 {b['f1']:.3f} FAR {100 * b['far']:.1f} % MAR "
                f"{100 * b['mar']:.1f} %   with FAR <= 15 %: F1 {c['f1']:.3f} FAR "
                f"{100 * c['far']:.1f} % MAR {100 * c['mar']:.1f} %"
            )


if __name__ == "__main__":
    main()
