"""GrangerMonitor on the project's plant simulator: decoupling detection and false alarms.

Each seed simulates ``Plant(PlantConfig(n_devices=20, seed=s))`` for ``--ticks`` samples
with ``random_faults(20, ticks, kinds=("decoupling",), duration=(300, 600),
warmup=0.4)`` and streams every device through its own monitor exactly as the stream
does: ``GrangerMonitor(sensors, lag=3, window=200, warmup=2000)``, one ``update(row)``
per tick. Fault-free runs (the same plants without a plan, seeds offset by 1000) add
false-alarm exposure.

Scoring, per decoupling fault of sensor ``s`` on ``[start, end)``:

* **detected** if a ``decoupling`` finding with effect ``s`` or a ``residual`` finding
  naming ``s`` has ``start <= ts_index < end + 300``; the **delay** is the first such
  finding's ``ts_index - start``; ``<end`` counts the hits made before the fault ended
  (a residual finding in the grace period is often the jump back to the true signal);
* **false** findings are those after the warm-up and outside every
  ``[start, end + 300)`` window of their device. Decoupling false alarms are counted per
  1e5 *tested pair-samples* (tested baseline edges into the sensor times the clean
  monitored samples), residual ones per 1e5 sensor-samples of the sensor, new links per
  1e5 non-edge pair-samples.

Usage: ``python bench/granger_plant.py [--seeds 0-4] [--clean 0-2] [--jobs 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from collections import defaultdict
from typing import Any

import numpy as np

from detectors.causality import GrangerMonitor
from stream.simulate.plant import Plant, PlantConfig

PARAMS: dict[str, Any] = {"lag": 3, "window": 200, "warmup": 2000}
GRACE = 300  # samples after a fault's end in which a finding still counts as a hit
N_DEVICES = 20
N_FAULTS = 20


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def run_seed(job: tuple[int, bool, int, tuple[str, ...]]) -> dict[str, Any]:
    """Simulate one plant and score every device's monitor.

    Parameters
    ----------
    job
        ``(seed, with_faults, ticks, sensors)``.

    Returns
    -------
    dict
        Per-fault outcomes and per-sensor false-alarm counts and exposures.
    """
    seed, with_faults, ticks, sensors = job
    plant = Plant(PlantConfig(n_devices=N_DEVICES, seed=seed, sensors=sensors))
    plan = None
    if with_faults:
        plan = plant.random_faults(
            N_FAULTS, ticks, kinds=("decoupling",), duration=(300, 600), warmup=0.4
        )
    run = plant.simulate(ticks, plan)
    names = list(run.sensors)
    warm = int(PARAMS["warmup"])
    faults: list[dict[str, Any]] = []
    # exposure/false counters keyed by (kind, effect sensor)
    expo: dict[str, float] = defaultdict(float)
    false: dict[str, int] = defaultdict(int)
    elapsed = 0.0
    for dev_i, dev in enumerate(run.devices):
        mon = GrangerMonitor(names, **PARAMS)
        t0 = time.perf_counter()
        found = [f for row in run.values[dev_i] for f in mon.update(row)]
        elapsed += time.perf_counter() - t0
        mine = [f for f in run.faults if f.device == dev]
        busy = np.zeros(ticks, dtype=bool)
        busy[:warm] = True
        for f in mine:
            busy[f.start : min(ticks, f.end + GRACE)] = True
        clean = int((~busy).sum())
        graph = mon.baseline_graph()
        for s in names:
            tested = sum(e.get("tested", e["watched"]) and e["effect"] == s for e in graph)
            edges_in = sum(e["effect"] == s for e in graph)
            expo[f"decoupling:{s}"] += tested * clean
            expo[f"residual:{s}"] += clean if edges_in else 0
            expo[f"untested_edges:{s}"] += edges_in - tested
            expo[f"edges:{s}"] += edges_in
        n_edges = len(graph)
        expo["new_link"] += (len(names) * (len(names) - 1) - n_edges) * clean
        for fd in found:
            if busy[min(fd.ts_index, ticks - 1)]:
                continue
            key = "new_link" if fd.kind == "new_link" else f"{fd.kind}:{fd.effect}"
            false[key] += 1
        for flt in mine:
            s = flt.sensors[0]
            hits = [
                f
                for f in found
                if f.kind in ("decoupling", "residual")
                and f.effect == s
                and flt.start <= f.ts_index < flt.end + GRACE
            ]
            first = min(hits, key=lambda f: f.ts_index) if hits else None
            faults.append(
                {
                    "seed": seed,
                    "device": dev,
                    "sensor": s,
                    "start": flt.start,
                    "length": flt.end - flt.start,
                    "detected": first is not None,
                    "delay": None if first is None else first.ts_index - flt.start,
                    "kind": None if first is None else first.kind,
                    "in_fault": first is not None and first.ts_index < flt.end,
                    "tested": any(
                        e.get("tested", e["watched"]) and e["effect"] == s for e in graph
                    ),
                }
            )
    return {
        "seed": seed,
        "faults": faults,
        "expo": dict(expo),
        "false": dict(false),
        "updates_per_s": N_DEVICES * ticks / elapsed,
    }


def summarise(results: list[dict[str, Any]], sensors: tuple[str, ...]) -> dict[str, Any]:
    """Aggregate :func:`run_seed` outputs into per-sensor rows and false-alarm rates."""
    faults = [f for r in results for f in r["faults"]]
    expo: dict[str, float] = defaultdict(float)
    false: dict[str, int] = defaultdict(int)
    for r in results:
        for k, v in r["expo"].items():
            expo[k] += v
        for k, v in r["false"].items():
            false[k] += v
    rows = []
    for s in sensors:
        mine = [f for f in faults if f["sensor"] == s]
        if not expo.get(f"edges:{s}") and not mine:
            continue
        delays = [f["delay"] for f in mine if f["detected"]]
        dec_x = expo.get(f"decoupling:{s}", 0.0)
        res_x = expo.get(f"residual:{s}", 0.0)
        rows.append(
            {
                "sensor": s,
                "faults": len(mine),
                "detected": len(delays),
                "rate": len(delays) / len(mine) if mine else float("nan"),
                "by_decoupling": sum(f["kind"] == "decoupling" for f in mine),
                "by_residual": sum(f["kind"] == "residual" for f in mine),
                "in_fault": sum(f["in_fault"] for f in mine),
                "median_delay": statistics.median(delays) if delays else float("nan"),
                "p90_delay": float(np.percentile(delays, 90)) if delays else float("nan"),
                "untested_edge_share": (
                    expo.get(f"untested_edges:{s}", 0.0) / expo[f"edges:{s}"]
                    if expo.get(f"edges:{s}")
                    else float("nan")
                ),
                "false_decoupling": false.get(f"decoupling:{s}", 0),
                "tested_pair_samples": dec_x,
                "false_dec_per_1e5": (
                    false.get(f"decoupling:{s}", 0) / dec_x * 1e5 if dec_x else float("nan")
                ),
                "false_residual": false.get(f"residual:{s}", 0),
                "false_res_per_1e5": (
                    false.get(f"residual:{s}", 0) / res_x * 1e5 if res_x else float("nan")
                ),
            }
        )
    total = len(faults)
    hit = [f["delay"] for f in faults if f["detected"]]
    return {
        "rows": rows,
        "total_faults": total,
        "total_detected": len(hit),
        "total_rate": len(hit) / total if total else float("nan"),
        "total_median_delay": statistics.median(hit) if hit else float("nan"),
        "false_new_link": false.get("new_link", 0),
        "new_link_pair_samples": expo.get("new_link", 0.0),
        "updates_per_s": statistics.median(r["updates_per_s"] for r in results),
    }


def _print(title: str, summary: dict[str, Any]) -> None:
    print(f"\n{title}")
    head = (
        f"{'sensor':<12}{'faults':>7}{'det':>5}{'<end':>5}{'rate':>8}{'dec/res':>9}"
        f"{'med':>6}{'p90':>6}"
        f"{'untested':>9}{'falseDec':>9}{'/1e5 pr':>9}{'falseRes':>9}{'/1e5 s':>8}"
    )
    print(head)
    for r in summary["rows"]:
        print(
            f"{r['sensor']:<12}{r['faults']:>7}{r['detected']:>5}{r['in_fault']:>5}"
            f"{r['rate']:>8.1%}"
            f"{str(r['by_decoupling']) + '/' + str(r['by_residual']):>9}"
            f"{r['median_delay']:>6.0f}{r['p90_delay']:>6.0f}{r['untested_edge_share']:>9.0%}"
            f"{r['false_decoupling']:>9}{r['false_dec_per_1e5']:>9.3f}"
            f"{r['false_residual']:>9}{r['false_res_per_1e5']:>8.3f}"
        )
    print(
        f"all: {summary['total_detected']}/{summary['total_faults']} = "
        f"{summary['total_rate']:.1%}, median delay {summary['total_median_delay']:.0f}; "
        f"new_link false {summary['false_new_link']} over "
        f"{summary['new_link_pair_samples']:.3g} pair-samples; "
        f"{summary['updates_per_s']:.0f} updates/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-4", help="plants with faults, e.g. 0-4 or 1,3")
    ap.add_argument("--clean", default="0-2", help="fault-free plants (seed + 1000)")
    ap.add_argument("--ticks", type=int, default=6000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--vibration", action="store_true", help="add the vibration sensor")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args()
    sensors = PlantConfig().sensors + (("vibration",) if args.vibration else ())
    jobs = [(s, True, args.ticks, sensors) for s in _seeds(args.seeds)]
    jobs += [(1000 + s, False, args.ticks, sensors) for s in _seeds(args.clean)]
    with mp.Pool(args.jobs) as pool:
        results = pool.map(run_seed, jobs)
    faulty = [r for r, j in zip(results, jobs, strict=True) if j[1]]
    clean = [r for r, j in zip(results, jobs, strict=True) if not j[1]]
    out: dict[str, Any] = {
        "params": PARAMS,
        "sensors": list(sensors),
        "with_faults": summarise(faulty, sensors) if faulty else None,
        "fault_free": summarise(clean, sensors) if clean else None,
    }
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return
    if out["with_faults"]:
        _print(f"plants with decoupling faults (seeds {args.seeds})", out["with_faults"])
    if out["fault_free"]:
        _print(f"fault-free plants (seeds 1000 + {args.clean})", out["fault_free"])


if __name__ == "__main__":
    main()
