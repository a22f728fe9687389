"""Score detections against injected ground truth (simulator runs, demo, tests).

A fault is *detected* when an anomaly event names its device (its key for log faults)
with an event time inside the fault's window, extended by ``grace_s`` after its end
(an episode may open on the last faulty sample's echo). Precision counts opened
episodes: one that matches no fault is a false alarm.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.events import AnomalyEvent


class FaultLike(Protocol):
    kind: str
    start_ts: float
    end_ts: float


@dataclass(slots=True)
class FaultResult:
    """One injected fault and what Vigil said about it."""

    key: str
    kind: str
    start_ts: float
    end_ts: float
    detected: bool = False
    right_sensor: bool = False
    delay_s: float | None = None


@dataclass(slots=True)
class DetectionReport:
    """Recall, precision and delay of a run, overall and per fault kind."""

    faults: list[FaultResult]
    episodes: int
    true_episodes: int
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        return sum(f.detected for f in self.faults) / len(self.faults) if self.faults else 1.0

    @property
    def precision(self) -> float:
        return self.true_episodes / self.episodes if self.episodes else 1.0

    @property
    def median_delay_s(self) -> float | None:
        delays = [f.delay_s for f in self.faults if f.delay_s is not None]
        return statistics.median(delays) if delays else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "faults": len(self.faults),
            "detected": sum(f.detected for f in self.faults),
            "recall": self.recall,
            "episodes": self.episodes,
            "true_episodes": self.true_episodes,
            "precision": self.precision,
            "median_delay_s": self.median_delay_s,
            "by_kind": {k: {"faults": n, "detected": d} for k, (n, d) in self.by_kind.items()},
        }


def _key_of(fault: Any) -> str:
    return str(getattr(fault, "device", None) or getattr(fault, "user", None))


def _anomaly_owner(a: AnomalyEvent) -> str:
    return a.device or a.user or a.host or a.key


def match_detections(
    faults: Sequence[Any], anomalies: Iterable[AnomalyEvent], grace_s: float = 30.0
) -> DetectionReport:
    """Match anomaly events to injected faults (see the module docstring)."""
    results = [FaultResult(_key_of(f), f.kind, float(f.start_ts), float(f.end_ts)) for f in faults]
    by_owner: dict[str, list[tuple[FaultResult, Any]]] = {}
    for res, fault in zip(results, faults, strict=True):
        by_owner.setdefault(res.key, []).append((res, fault))
    episodes = 0
    true_episodes = 0
    for a in sorted(anomalies, key=lambda e: e.event_ts):
        opened = (a.details or {}).get("action", "open") == "open"
        episodes += opened
        hit = False
        for res, fault in by_owner.get(_anomaly_owner(a), []):
            if res.start_ts <= a.event_ts <= res.end_ts + grace_s:
                hit = True
                if not res.detected:
                    res.detected = True
                    res.delay_s = a.event_ts - res.start_ts
                sensors = getattr(fault, "sensors", ()) or ()
                if a.sensor is not None and a.sensor in sensors:
                    res.right_sensor = True
        true_episodes += opened and hit
    by_kind: dict[str, tuple[int, int]] = {}
    for res in results:
        n, d = by_kind.get(res.kind, (0, 0))
        by_kind[res.kind] = (n + 1, d + res.detected)
    return DetectionReport(results, episodes, true_episodes, by_kind)
