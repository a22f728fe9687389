"""Incidents per injected anomaly, and their delay (issue 9), on the simulator and SKAB.

An incident (``stream/incidents.py``) groups a key's anomalies from the first until
every contributing episode has closed. For each labelled anomaly window (a simulated
fault; a run of SKAB's ``anomaly`` label after the 400 warm-up rows), this counts the
incidents *opened* inside the window (plus a grace after its end), the delay from the
window's start to the first of them, and the incidents opened outside every window
(false incidents). Goal: about one incident per anomaly.

    .venv/bin/python bench/incidents.py [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from stream.evaluate import skab
from stream.evaluate.runner import default_data_dir, run_messages
from stream.events import IncidentEvent
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig

REPO = Path(__file__).resolve().parents[1]

Window = tuple[str, float, float]  # key, start ts, end ts (exclusive)


def score(
    windows: Sequence[Window], incidents: Sequence[IncidentEvent], grace: float
) -> dict[str, Any]:
    opened = [i for i in incidents if i.action == "open"]
    per_window, delays, used = [], [], set()
    for key, start, end in windows:
        inside = [i for i in opened if i.key == key and start <= i.opened_ts < end + grace]
        per_window.append(len(inside))
        used.update(i.incident_id for i in inside)
        if inside:
            delays.append(min(i.opened_ts for i in inside) - start)
    false = [i for i in opened if i.incident_id not in used]
    found = sum(1 for n in per_window if n)
    return {
        "anomalies": len(windows),
        "detected": found,
        "incidents_per_detected_anomaly": round(sum(per_window) / max(found, 1), 2),
        "false_incidents": len(false),
        "median_delay_s": None if not delays else round(statistics.median(delays), 1),
    }


def simulator() -> dict[str, Any]:
    plant = Plant(PlantConfig(n_devices=20, seed=7))
    run = plant.simulate(3000, plant.random_faults(40, 3000, duration=(30, 200)))
    msgs = [("sensors", r["device"].encode(), orjson.dumps(r)) for r in run.batches()]
    scored = run_messages(Settings.load(), msgs)
    windows = [(f.device, f.start_ts, f.end_ts) for f in run.faults]
    return {
        "data": "simulated plant, 20 pumps x 3,000 ticks, 40 faults (default config)",
        **score(windows, scored.incidents, grace=60.0),
    }


def skab_incidents() -> dict[str, Any]:
    settings = Settings.load(REPO / "configs" / "skab.yaml")
    experiments = skab.load(default_data_dir("skab"))
    scored = run_messages(settings, skab.messages(experiments))
    windows: list[Window] = []
    for e in experiments:
        labels = e.labels[skab.TRAIN_ROWS :]
        ts = e.ts[skab.TRAIN_ROWS :]
        start = None
        for i, v in enumerate(labels):
            if v and start is None:
                start = float(ts[i])
            if not v and start is not None:
                windows.append((e.name, start, float(ts[i])))
                start = None
        if start is not None:
            windows.append((e.name, start, float(ts[-1]) + 1.0))
    late = [i for i in scored.incidents]
    starts = {e.name: float(e.ts[skab.TRAIN_ROWS]) for e in experiments}
    late = [i for i in late if i.opened_ts >= starts.get(i.key, 0.0)]
    return {"data": "SKAB (configs/skab.yaml)", **score(windows, late, grace=60.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [simulator(), skab_incidents()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        "| data | anomalies | detected | incidents per detected anomaly | false incidents | median delay (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['data']} | {r['anomalies']} | {r['detected']} | "
            f"{r['incidents_per_detected_anomaly']} | {r['false_incidents']} | {r['median_delay_s']} |"
        )


if __name__ == "__main__":
    main()
