"""Decide: from a stream of scores to anomaly episodes with severities.

A score crosses the warning or critical threshold, an episode opens (one anomaly
event); a later, higher severity escalates it (a second event with the same episode
id); ``cooldown`` normal scores in a row close it. Before ``warmup`` scores a key only
learns. Thresholds come from target false-alarm rates: a score is ``1 - tail
probability``, so ``score > 1 - rate`` fires at about ``rate`` on normal data when the
detector is calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from detectors.thresholds import SPOT

Action = Literal["open", "escalate", "close"]
SEVERITY_RANK = {"warning": 1, "critical": 2}


def spot_refit_every(max_peaks: int) -> int:
    """New peaks between two GPD fits of a key's SPOT: a tenth of the kept ones, at
    least 10 (SPOT's default).

    A fit costs O(``max_peaks``) (~0.4 ms on 250), and past calibration about one
    surprise in ten is a peak (``spot_quantile`` 0.9): refitting every 10 peaks spent a
    fifth of the worker's time past the warm-ups on fits. Between fits the level still
    follows every peak (the peak rate moves it); the shape and scale lag by at most a
    tenth of the window they are fitted on, well inside their own sampling error.
    """
    return max(10, max_peaks // 10)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score thresholds of one key, from target false-alarm rates."""

    warning: float
    critical: float

    @classmethod
    def from_rates(cls, warning_rate: float, critical_rate: float) -> Thresholds:
        return cls(warning=1.0 - warning_rate, critical=1.0 - critical_rate)

    def severity(self, score: float) -> str | None:
        if score >= self.critical:
            return "critical"
        if score >= self.warning:
            return "warning"
        return None


class SpotLevels(NamedTuple):
    """A calibrated key's SPOT levels as last computed (a cache, not state)."""

    spot: SPOT
    key: tuple[int, float]  # (peaks the SPOT has seen, the alert-rate scale)
    judge: Thresholds  # what the key's surprises are compared with
    shown: Thresholds  # the same levels as scores in [0, 1], for the event
    #: Under this, a surprise changes nothing but counters: no SPOT peak or alarm, no
    #: severity (so a closed episode stays closed).
    quiet: float

    @staticmethod
    def key_of(spot: SPOT, scale: float) -> tuple[int, float]:
        """What the levels depend on: SPOT moves its level only when a peak arrives,
        and the levels follow the same rule (and a change of the rate scale)."""
        return (spot.peaks_seen, scale)

    def hold(self, spot: SPOT, scale: float) -> bool:
        """Whether these are still ``spot``'s levels at the rate ``scale``."""
        return self.spot is spot and self.key == self.key_of(spot, scale)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the episode tracker decided for one score."""

    action: Action
    severity: str
    episode_id: str
    episode_start_ts: float


class Episodes:
    """The episode state of one scored stream (a device's sensor, a user, an edge)."""

    __slots__ = (
        "episode_seq",
        "exceeded",
        "n_seen",
        "normal_run",
        "open_since",
        "opened",
        "peak_severity",
    )

    def __init__(self) -> None:
        self.n_seen = 0
        self.exceeded = 0  # scores at or above the warning threshold, after warm-up
        self.opened = 0  # episodes those opened
        self.open_since: float | None = None
        self.peak_severity: str | None = None
        self.normal_run = 0
        self.episode_seq = 0

    def step(
        self, score: float, ts: float, thresholds: Thresholds, warmup: int, cooldown: int, key: str
    ) -> Decision | None:
        """Advance by one score; return what to publish, if anything."""
        self.n_seen += 1
        if self.n_seen <= warmup:
            return None
        severity = thresholds.severity(score)
        self.exceeded += severity is not None
        if self.open_since is None:
            if severity is None:
                return None
            self.opened += 1
            self.open_since = ts
            self.peak_severity = severity
            self.normal_run = 0
            self.episode_seq += 1
            return Decision("open", severity, self._episode_id(key), ts)
        if severity is None:
            self.normal_run += 1
            if self.normal_run >= cooldown:
                start = self.open_since
                peak = self.peak_severity or "warning"
                eid = self._episode_id(key)
                self.open_since = None
                self.peak_severity = None
                return Decision("close", peak, eid, start)
            return None
        self.normal_run = 0
        if SEVERITY_RANK[severity] > SEVERITY_RANK[self.peak_severity or "warning"]:
            self.peak_severity = severity
            return Decision("escalate", severity, self._episode_id(key), self.open_since)
        return None

    @property
    def extremal_index(self) -> float:
        """Episodes per exceedance, ``(opened + 1) / (exceeded + 1)``, in ``[0.05, 1]``.

        The runs estimator of the extremal index (Leadbetter 1983; Smith & Weissman
        1994): exceedances of an autocorrelated score come in clusters, and one cluster
        is one alert, so alerts arrive at ``theta`` times the exceedance rate.
        """
        return min(1.0, max(0.05, (self.opened + 1) / (self.exceeded + 1)))

    def _episode_id(self, key: str) -> str:
        from stream.codecs import event_id

        return event_id("episode", key, self.open_since, self.episode_seq)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n_seen,
            "open": self.open_since,
            "peak": self.peak_severity,
            "run": self.normal_run,
            "seq": self.episode_seq,
            "exc": self.exceeded,
            "opn": self.opened,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episodes:
        ep = cls()
        ep.n_seen = int(data["n"])
        ep.open_since = None if data["open"] is None else float(data["open"])
        ep.peak_severity = data["peak"] if data["peak"] in SEVERITY_RANK else None
        ep.normal_run = int(data["run"])
        ep.episode_seq = int(data["seq"])
        ep.exceeded = int(data.get("exc", 0))
        ep.opened = int(data.get("opn", 0))
        return ep
