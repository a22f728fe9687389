"""The simulated plant through the pipeline, scored per fault kind.

A plant with random injected faults of every kind (:mod:`stream.simulate`) is sent
reading by reading through the pipeline core; its anomaly events are matched to the
faults with :func:`stream.truth.match_detections` (same device, event time inside
the fault window plus a grace period). Reported per kind: recall, and over the run
the precision of opened episodes and the median detection delay per kind.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

from stream.embedded import Message
from stream.evaluate.runner import Advance, reading_message, run_messages
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig, PlantRun
from stream.truth import match_detections


def messages(run: PlantRun) -> Iterator[Message]:
    """One reading message per value, tick by tick."""
    for r in run.readings():
        yield reading_message(r["device"], r["sensor"], r["ts"], r["value"])


def evaluate(
    settings: Settings,
    n_devices: int = 10,
    n_ticks: int = 3000,
    n_faults: int = 40,
    seed: int = 7,
    advance: Advance | None = None,
) -> dict[str, Any]:
    """Simulate, run, and score; every number depends only on the arguments."""
    plant = Plant(PlantConfig(n_devices=n_devices, seed=seed))
    run = plant.simulate(n_ticks, plant.random_faults(n_faults, n_ticks))
    scored = run_messages(settings, messages(run), advance)
    report = match_detections(run.faults, scored.anomalies)
    by_kind: dict[str, dict[str, Any]] = {}
    for f in report.faults:
        row = by_kind.setdefault(f.kind, {"faults": 0, "detected": 0, "delays": []})
        row["faults"] += 1
        row["detected"] += f.detected
        if f.delay_s is not None:
            row["delays"].append(f.delay_s)
    kinds = {
        k: {
            "faults": v["faults"],
            "detected": v["detected"],
            "recall": v["detected"] / v["faults"],
            "median_delay_s": statistics.median(v["delays"]) if v["delays"] else None,
        }
        for k, v in sorted(by_kind.items())
    }
    return {
        "recall": report.recall,
        "precision": report.precision,
        "median_delay_s": report.median_delay_s,
        "episodes": report.episodes,
        "faults": len(report.faults),
        "by_kind": kinds,
        "readings": scored.messages,
        "seconds": scored.seconds,
        "setup": {"devices": n_devices, "ticks": n_ticks, "faults": n_faults, "seed": seed},
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds' results: the mean recall and precision, faults per kind summed.

    The mean over seeds, not a pooled ratio, so each plant counts alike however many
    episodes it opened.
    """
    if not runs:
        raise ValueError("no runs to pool")
    kinds: dict[str, dict[str, int]] = {}
    for run in runs:
        for kind, row in run["by_kind"].items():
            acc = kinds.setdefault(kind, {"faults": 0, "detected": 0})
            acc["faults"] += row["faults"]
            acc["detected"] += row["detected"]
    return {
        "recall": statistics.mean(r["recall"] for r in runs),
        "precision": statistics.mean(r["precision"] for r in runs),
        "episodes": sum(r["episodes"] for r in runs),
        "faults": sum(r["faults"] for r in runs),
        "by_kind": {
            k: {**v, "recall": v["detected"] / v["faults"]} for k, v in sorted(kinds.items())
        },
        "seeds": [r["setup"]["seed"] for r in runs],
        "runs": runs,
    }
