"""SKAB's outlier protocol through the pipeline core.

Each experiment file is one device with eight sensors; every row is sent as one
batched message (``{"device", "ts", "values"}``) so a multivariate detector sees
complete rows. The first :data:`TRAIN_ROWS` rows of a file are learned but not scored
(the published methods train on them). A row is predicted anomalous when the
pipeline's score crosses the configured warning threshold (``1 - warning_rate``, the
threshold of the decision layer) on any of its sensors — for a multivariate detector
that is its row score. Point-wise F1, false-alarm rate (FAR) and missing-alarm rate
(MAR) are pooled over every scored row of every file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream.embedded import Message
from stream.evaluate.runner import Advance, row_message, run_messages
from stream.settings import Settings

TRAIN_ROWS = 400
LABEL_COLUMNS = ("anomaly", "changepoint")


@dataclass(slots=True)
class Experiment:
    """One SKAB file: timestamps, sensor columns and the outlier labels."""

    name: str
    ts: np.ndarray
    sensors: list[str]
    values: np.ndarray  # (rows, sensors)
    labels: np.ndarray  # (rows,) 0/1


def _sensor_name(column: str) -> str:
    # Sensor names must be plain identifiers on the wire (no spaces).
    return "".join(ch if ch.isalnum() else "_" for ch in column.strip())


def load(data_dir: Path) -> list[Experiment]:
    """Every ``*.csv`` under ``data_dir``, recursively, except ``anomaly-free/``."""
    out: list[Experiment] = []
    paths = sorted(
        p for p in data_dir.rglob("*.csv") if "anomaly-free" not in p.relative_to(data_dir).parts
    )
    for path in paths:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter=";"))
        columns = [c for c in rows[0] if c not in ("datetime", *LABEL_COLUMNS)]
        ts = np.array(
            [datetime.fromisoformat(r["datetime"]).replace(tzinfo=UTC).timestamp() for r in rows]
        )
        values = np.array([[float(r[c]) for c in columns] for r in rows])
        labels = np.array([int(float(r["anomaly"])) for r in rows])
        rel = path.relative_to(data_dir).with_suffix("")
        name = "skab-" + "-".join(rel.parts)
        out.append(Experiment(name, ts, [_sensor_name(c) for c in columns], values, labels))
    return out


def messages(experiments: list[Experiment]) -> Iterator[Message]:
    """One batched row message per row, experiment after experiment."""
    for e in experiments:
        for t, row in zip(e.ts, e.values, strict=True):
            yield row_message(e.name, float(t), dict(zip(e.sensors, map(float, row), strict=True)))


def confusion(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """F1, FAR (FP / negatives) and MAR (FN / positives) of binary predictions."""
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    tn = int(np.sum(~pred & ~truth))
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {
        "f1": f1,
        "far": fp / max(fp + tn, 1),
        "mar": fn / max(fn + tp, 1),
        "precision": precision,
        "recall": recall,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def evaluate(data_dir: Path, settings: Settings, advance: Advance | None = None) -> dict[str, Any]:
    """Run every experiment through the pipeline and score the scored rows."""
    experiments = load(data_dir)
    scored = run_messages(settings, messages(experiments), advance)
    threshold = 1.0 - settings.warning_rate
    preds, truths, row_scores = [], [], []
    per_file: list[dict[str, Any]] = []
    for e in experiments:
        by_sensor = scored.scores.get(e.name, {})
        mat = np.array([[s for _, s in by_sensor[name]] for name in e.sensors]).T
        if mat.shape[0] != len(e.ts):
            raise RuntimeError(f"{e.name}: {mat.shape[0]} scored rows for {len(e.ts)}")
        row = mat.max(axis=1)[TRAIN_ROWS:]
        pred = row >= threshold
        truth = e.labels[TRAIN_ROWS:].astype(bool)
        preds.append(pred)
        truths.append(truth)
        row_scores.append(row)
        per_file.append({"file": e.name, **confusion(pred, truth)})
    res: dict[str, Any] = dict(confusion(np.concatenate(preds), np.concatenate(truths)))
    res.update(
        threshold=threshold,
        files=len(experiments),
        rows_scored=int(sum(len(p) for p in preds)),
        seconds=scored.seconds,
        per_file=per_file,
        detector=settings.sensor_detector.model_dump(),
    )
    return res
