"""NAB through the pipeline core: per-point scores, NAB's scoring, three profiles.

Every file of ``data/<category>/<name>.csv`` is one device (the file name) with one
sensor (``value``); its readings go through :func:`stream.embedded.run_embedded` in
time order, one JSON message each, files one after the other. The anomaly score of a
point is the pipeline's per-point score (``score_sink``); the threshold of each
profile is then chosen over the whole corpus as NAB's optimiser does. "What users
get" scores the pipeline's own decisions instead: a point is a detection when the
pipeline published an anomaly event (episode open or escalation) at it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream.embedded import Message
from stream.evaluate import nab_scoring as ns
from stream.evaluate.runner import Advance, reading_message, run_messages
from stream.settings import Settings

SENSOR = "value"


def parse_ts(text: str) -> float:
    """NAB's ``2014-04-10 00:00:00[.ffffff]`` (UTC) as epoch seconds."""
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


@dataclass(slots=True)
class NabFile:
    """One NAB series and its labelled windows (as point indices, inclusive)."""

    key: str  # "<category>/<name>.csv", the key of the labels file
    ts: np.ndarray
    values: np.ndarray
    raw_ts: list[str]
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def device(self) -> str:
        return Path(self.key).stem

    @property
    def category(self) -> str:
        return self.key.split("/")[0]


def load_corpus(data_dir: Path) -> tuple[list[NabFile], int]:
    """Every file under ``data/`` with its windows; and the number of labelled windows."""
    labels = json.loads((data_dir / "labels" / "combined_windows.json").read_text())
    files: list[NabFile] = []
    n_windows = 0
    for path in sorted((data_dir / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        raw_ts = [r["timestamp"] for r in rows]
        ts = np.array([parse_ts(t) for t in raw_ts])
        f = NabFile(key, ts, np.array([float(r["value"]) for r in rows]), raw_ts)
        for start, end in labels.get(key, []):
            first = int(np.searchsorted(ts, parse_ts(start), side="left"))
            last = int(np.searchsorted(ts, parse_ts(end), side="right")) - 1
            if first <= last:
                f.windows.append((first, last))
            n_windows += 1
        files.append(f)
    return files, n_windows


def messages(files: list[NabFile]) -> Iterator[Message]:
    """One reading message per point, file after file, in time order."""
    for f in files:
        for t, v in zip(f.ts, f.values, strict=True):
            yield reading_message(f.device, SENSOR, float(t), float(v))


@dataclass(slots=True)
class NabRun:
    """Per-file scores and decisions of one pipeline run over the corpus."""

    files: list[NabFile]
    n_windows: int
    scores: dict[str, np.ndarray]
    decisions: dict[str, np.ndarray]
    seconds: float


def run(settings: Settings, data_dir: Path, advance: Advance | None = None) -> NabRun:
    """Feed the corpus through the pipeline; align scores and events to points."""
    files, n_windows = load_corpus(data_dir)
    scored = run_messages(settings, messages(files), advance)
    scores: dict[str, np.ndarray] = {}
    decisions: dict[str, np.ndarray] = {}
    by_device: dict[str, list[float]] = {}
    for a in scored.anomalies:
        by_device.setdefault(a.device or "", []).append(a.event_ts)
    for f in files:
        got = scored.scores.get(f.device, {}).get(SENSOR, [])
        if len(got) != len(f.ts):
            raise RuntimeError(f"{f.key}: {len(got)} scores for {len(f.ts)} points")
        scores[f.key] = np.array([s for _, s in got])
        flags = np.zeros(len(f.ts))
        idx = np.searchsorted(f.ts, by_device.get(f.device, []))
        flags[idx[idx < len(f.ts)]] = 1.0
        decisions[f.key] = flags
    return NabRun(files, n_windows, scores, decisions, scored.seconds)


#: Harness rule of the optimised figures: after an alarm, the next ``HOLD`` points
#: cannot alarm (a refractory period, as NAB's HTM detector applies). One value for
#: every file; 0 gives NAB's plain sweep over every distinct score.
HOLD = 300


def score(run_: NabRun, profiles: list[ns.CostProfile], hold: int = HOLD) -> dict[str, Any]:
    """NAB scores per profile: optimised threshold, and the pipeline's own decisions."""
    out: dict[str, Any] = {"hold": hold}
    default: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    for p in profiles:
        sweeps = [ns.sweep_file(run_.scores[f.key], f.windows, p) for f in run_.files]
        null = ns.null_score(sweeps, p.fn)
        raw = ns.optimise(sweeps, p.fn)
        plain[p.name] = ns.normalise(raw.score, null, run_.n_windows, p.tp)
        if hold > 0:
            full = [run_.scores[f.key] for f in run_.files]
            best = ns.optimise_with_hold(sweeps, full, hold, p.fn)
        else:
            best = raw
        out[p.name] = ns.normalise(best.score, null, run_.n_windows, p.tp)
        out[f"{p.name}_threshold"] = best.threshold
        out[f"{p.name}_detected_windows"] = best.detected_windows
        out[f"{p.name}_false_positives"] = best.false_positives
        dec = [
            ns.FileSweep(
                run_.decisions[f.key][-len(s.scores) :] if len(s.scores) else s.scores,
                s.worth,
                s.window,
                s.n_windows,
            )
            for f, s in zip(run_.files, sweeps, strict=True)
        ]
        at = ns.score_at(dec, 0.5, p.fn)
        default[p.name] = ns.normalise(at.score, null, run_.n_windows, p.tp)
        default[f"{p.name}_detected_windows"] = at.detected_windows
        default[f"{p.name}_false_positives"] = at.false_positives
    out["default_threshold"] = default
    out["no_hold"] = plain
    out["windows"] = run_.n_windows
    out["files"] = len(run_.files)
    out["points"] = int(sum(len(f.ts) for f in run_.files))
    out["seconds"] = run_.seconds
    return out


def export_results(run_: NabRun, out_dir: Path, detector: str) -> int:
    """Write NAB results files ``<detector>/<category>/<detector>_<file>.csv``."""
    n = 0
    for f in run_.files:
        path = out_dir / detector / f.category / f"{detector}_{Path(f.key).name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        label = np.zeros(len(f.ts), dtype=int)
        for first, last in f.windows:
            label[first : last + 1] = 1
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score", "label"])
            for t, v, s, lab in zip(f.raw_ts, f.values, run_.scores[f.key], label, strict=True):
                w.writerow([t, repr(float(v)), f"{s:.10f}", int(lab)])
        n += 1
    return n


def evaluate(
    data_dir: Path, settings: Settings, advance: Advance | None = None, hold: int = HOLD
) -> tuple[dict[str, Any], NabRun]:
    """Run and score NAB with one configuration for every file."""
    run_ = run(settings, data_dir, advance)
    return score(run_, ns.load_profiles(data_dir / "profiles.json"), hold), run_
