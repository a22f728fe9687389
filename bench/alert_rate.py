"""Observed alert rate on anomaly-free data against the target rate (issue 9).

Anomaly-free inputs: NAB ``artificialNoAnomaly`` (3 series), SKAB ``anomaly-free``
(8 sensors, 9,405 s) and fault-free simulated plants (20 pumps x 4 sensors x 5,000
ticks). For each target ``warning_rate`` and each threshold policy (``rate``: the fixed
score threshold ``1 - warning_rate``; ``spot``: per-key SPOT tails) it counts *alert
events* — anomaly episodes opened — per scored reading after the key's warm-up and
calibration, with ``cooldown = 1`` so an episode is one exceedance run. ``auto`` (the
default policy) is ``rate`` until a key's SPOT is calibrated, then ``spot``; its alerts
count from the end of warm-up. Everything runs
through the pipeline core, in streaming order.

    .venv/bin/python bench/alert_rate.py [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import orjson

from stream.embedded import Message, run_embedded
from stream.pipeline import Pipeline
from stream.settings import CausalitySpec, Settings
from stream.simulate.plant import Plant, PlantConfig

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VIGIL_DATASETS", REPO.parent / "shared" / "datasets"))
RATES = (1e-2, 3e-3, 1e-3, 1e-4)
WARMUP = 100


def nab_messages() -> tuple[list[Message], int]:
    msgs: list[Message] = []
    for path in sorted((DATA / "nab" / "data" / "artificialNoAnomaly").glob("*.csv")):
        with path.open(newline="") as fh:
            for r in csv.DictReader(fh):
                ts = datetime.fromisoformat(r["timestamp"]).replace(tzinfo=UTC).timestamp()
                rec = {"device": path.stem, "sensor": "value", "ts": ts, "value": float(r["value"])}
                msgs.append(("sensors", path.stem.encode(), orjson.dumps(rec)))
    return msgs, 1


def skab_messages() -> tuple[list[Message], int]:
    msgs: list[Message] = []
    with (DATA / "skab" / "anomaly-free" / "anomaly-free.csv").open(newline="") as fh:
        for r in csv.DictReader(fh, delimiter=";"):
            ts = datetime.fromisoformat(r["datetime"]).replace(tzinfo=UTC).timestamp()
            for col, v in r.items():
                if col != "datetime":
                    sensor = "".join(ch if ch.isalnum() else "_" for ch in col)
                    rec = {"device": "skab-free", "sensor": sensor, "ts": ts, "value": float(v)}
                    msgs.append(("sensors", b"skab-free", orjson.dumps(rec)))
    return msgs, 8


def plant_messages() -> tuple[list[Message], int]:
    run = Plant(PlantConfig(n_devices=20, seed=99)).simulate(5000)
    return [("sensors", r["device"].encode(), orjson.dumps(r)) for r in run.readings()], 4


def measure(
    msgs: list[Message], policy: str, rate: float, config: str | None = None
) -> tuple[float, int, int]:
    settings = Settings.load(
        config,
        warning_rate=rate,
        critical_rate=rate / 100,
        thresholds=policy,
        spot_init=1000,
        warmup=WARMUP,
        cooldown=1,
        causality=CausalitySpec(enabled=False),
    )
    counted: dict[str, int] = {}

    def sink(device: str, sensor: str, ts: float, value: float, score: float) -> None:
        counted[f"{device}/{sensor}"] = counted.get(f"{device}/{sensor}", 0) + 1

    result = run_embedded(Pipeline(settings, score_sink=sink), msgs, 1000)
    skip = WARMUP + (settings.spot_init if policy == "spot" else 0)
    scored = sum(max(n - skip, 0) for n in counted.values())
    alerts = sum(1 for a in result.anomalies if (a.details or {}).get("action") == "open")
    return alerts / max(scored, 1), alerts, scored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--policy", choices=("rate", "spot", "auto"), action="append")
    ap.add_argument(
        "--config", help="settings file whose detectors are measured (rates and policy as above)"
    )
    args = ap.parse_args()
    policies = args.policy or ["rate", "spot", "auto"]
    rows = []
    for name, make in (
        ("NAB artificialNoAnomaly", nab_messages),
        ("SKAB anomaly-free", skab_messages),
        ("simulated plant, fault-free", plant_messages),
    ):
        msgs, _ = make()
        for rate in RATES:
            for policy in policies:
                observed, alerts, scored = measure(msgs, policy, rate, args.config)
                rows.append(
                    {
                        "data": name,
                        "target": rate,
                        "policy": policy,
                        "observed": observed,
                        "alerts": alerts,
                        "scored": scored,
                        "ratio": observed / rate,
                    }
                )
    if args.json:
        print(json.dumps(rows))
        return
    print(
        f"{'data':30} {'target':>8} {'policy':>6} {'observed':>10} {'ratio':>7} {'alerts':>7} {'scored':>8}"
    )
    for r in rows:
        print(
            f"{r['data']:30} {r['target']:>8.0e} {r['policy']:>6} {r['observed']:>10.2e} {r['ratio']:>7.2f} {r['alerts']:>7} {r['scored']:>8}"
        )


if __name__ == "__main__":
    main()
