"""Bytes of state per device: in memory (``DeviceModel.state_size``) and as the JSON
snapshot the changelog stores (and the time to make it, JSON included), for the
default configuration and its parts.

An 8-sensor device (correlated random walks with noise, one message per tick) goes
through the pipeline core for ``--ticks`` ticks, past the Granger warm-up (2,000 rows)
and past SPOT's calibration (1,000 scores per sensor); the last row is the default
after 1,000 ticks, in the middle of the warm-up.

    .venv/bin/python bench/state_size.py [--ticks 2600] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import orjson

from stream.embedded import Message, run_embedded
from stream.pipeline import Pipeline
from stream.settings import CausalitySpec, Settings
from stream.state import DeviceModel

SENSORS = [f"s{i}" for i in range(8)]


def messages(ticks: int, seed: int = 0) -> list[Message]:
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.normal(0.0, 0.1, ticks))
    mix = rng.normal(1.0, 0.3, len(SENSORS))
    out: list[Message] = []
    for t in range(ticks):
        values = {s: float(mix[i] * base[t] + rng.normal(0.0, 1.0)) for i, s in enumerate(SENSORS)}
        body = {"device": "dev-8", "ts": float(t), "values": values}
        out.append(("sensors", b"dev-8", orjson.dumps(body)))
    return out


def snapshot_time(model: DeviceModel, repeats: int = 5, n: int = 200) -> float:
    """Seconds per snapshot and its JSON, as a checkpoint writes it (median of runs)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            orjson.dumps(model.snapshot())
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def measure(settings: Settings, msgs: list[Message]) -> dict[str, float]:
    pipeline = Pipeline(settings)
    run_embedded(pipeline, msgs, 500)
    model = pipeline.devices["dev-8"]
    snapshot = orjson.dumps(model.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY)
    spots = sum(sp.state_size() for sp in model.spots.values())
    return {
        "state_bytes": model.state_size(),
        "snapshot_bytes": len(snapshot),
        "snapshot_us": round(snapshot_time(model) * 1e6, 1),
        "detector_bytes": model.detector.state_size(),
        "spot_bytes": spots,
        "granger_bytes": 0 if model.granger is None else model.granger.state_size(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=int, default=2600)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    msgs = messages(args.ticks)
    cases = {
        "detector, fixed thresholds": dict(
            thresholds="rate", causality=CausalitySpec(enabled=False)
        ),
        "detector, per-key thresholds (auto)": dict(
            thresholds="auto", causality=CausalitySpec(enabled=False)
        ),
        "default (detector, auto, Granger checks)": dict(thresholds="auto"),
        "detector, rate, Granger checks": dict(thresholds="rate"),
    }
    rows = [{"case": name, **measure(Settings.load(**over), msgs)} for name, over in cases.items()]
    # A fleet that has just started is mid warm-up: the Granger checks' heaviest phase.
    warming = min(1000, args.ticks)
    rows.append(
        {
            "case": f"default, mid warm-up ({warming:,} ticks)",
            **measure(Settings.load(thresholds="auto"), msgs[:warming]),
        }
    )
    if args.json:
        print(json.dumps(rows))
        return
    print(
        f"{'case':42} {'state B':>9} {'snapshot B':>11} {'snap µs':>8} {'detector':>9} "
        f"{'SPOT':>7} {'Granger':>8}"
    )
    for r in rows:
        print(
            f"{r['case']:42} {r['state_bytes']:>9,} {r['snapshot_bytes']:>11,} "
            f"{r['snapshot_us']:>8.1f} {r['detector_bytes']:>9,} {r['spot_bytes']:>7,} "
            f"{r['granger_bytes']:>8,}"
        )


if __name__ == "__main__":
    main()
