"""Per-key state: what Vigil remembers about one device or one log source.

A :class:`DeviceModel` holds, for each sensor of a device, a detector and the episode
state of the decision layer. A :class:`LogSourceModel` does the same for a log key
(host or user). Both snapshot to JSON-safe dicts (detector snapshots inside) that the
worker stores in a changelog-backed table, so a restarted worker resumes where it was.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

import detectors
from detectors._arrays import normal_two_sided_tail, score_to_surprise, tail_to_score
from detectors.base import Detector, SnapshotError, UnivariateDetector
from detectors.causality import CausalityFinding, GrangerMonitor
from detectors.logs import AuthDetector, RareTemplateDetector, TemplateMiner
from detectors.logs.markov import MarkovSequenceDetector
from detectors.logs.rates import TemplateRates
from detectors.thresholds import SPOT
from detectors.univariate.ewma import EWMAChart
from stream.decide import Episodes, SpotLevels
from stream.feedback import KeyFeedback
from stream.incidents import IncidentTracker
from stream.rows import Row, RowAssembler

log = logging.getLogger(__name__)

STATE_VERSION = 1
RECENT_SCORES = 20
LOG_STATE_VERSION = 2


class StateError(ValueError):
    """A stored state is unreadable; the key restarts from scratch (and it is counted)."""


@dataclass(frozen=True, slots=True)
class LearningGuard:
    """The "protect" learning policy: what not to learn, and for how long."""

    threshold: float
    max_run: int


class RecentScores:
    """The last :data:`RECENT_SCORES` ``(ts, score)`` of each channel, for the HTTP API.

    Flat rings of doubles (16 bytes an entry) rather than a deque of tuples per channel
    (about 100 bytes an entry): with 8 full channels, 2.6 KB a device instead of 20 KB,
    which over 100,000 devices is 1.7 GB of a worker's memory.
    """

    __slots__ = ("_count", "_ring")

    def __init__(self) -> None:
        self._ring = array("d")  # per channel: RECENT_SCORES ts, then as many scores
        self._count = array("q")  # entries ever added, per channel

    def add(self, channel: int, ts: float, score: float) -> None:
        while channel >= len(self._count):
            self._ring.extend(_EMPTY_RING)
            self._count.append(0)
        n = self._count[channel]
        base = channel * 2 * RECENT_SCORES + n % RECENT_SCORES
        self._ring[base] = ts
        self._ring[base + RECENT_SCORES] = score
        self._count[channel] = n + 1

    def get(self, channel: int) -> list[tuple[float, float]]:
        """The channel's entries, oldest first."""
        if channel >= len(self._count):
            return []
        n = self._count[channel]
        start = channel * 2 * RECENT_SCORES
        slots = [(n - k) % RECENT_SCORES for k in range(min(n, RECENT_SCORES), 0, -1)]
        ring = self._ring
        return [(ring[start + i], ring[start + RECENT_SCORES + i]) for i in slots]


_EMPTY_RING = array("d", [0.0] * (2 * RECENT_SCORES))


class DeviceModel:
    """All that Vigil keeps for one device: one detector over its sensors, and episodes.

    The detector is vectorised over the device's sensors (its channels); a sensor seen
    for the first time becomes a new channel (``grow``), or, for a detector that cannot
    grow, the detector is rebuilt while it is still young.
    """

    def __init__(
        self,
        device: str,
        detector_spec: dict[str, Any],
        max_sensors: int,
        causality: dict[str, Any] | None = None,
    ) -> None:
        self.device = device
        self.detector_spec = detector_spec
        self.max_sensors = max_sensors
        self.causality = causality  # GrangerMonitor params, or None when off
        self.sensors: list[str] = []
        self.index: dict[str, int] = {}
        self.episodes: list[Episodes] = []
        self.last_values: list[float] = []
        self.detector: Detector = self._new_detector()
        self._stack_key: tuple[Detector, str] | None = None
        self.granger: GrangerMonitor | None = None
        self.rows = RowAssembler()  # full ticks for the multivariate detector and Granger
        self.device_episodes = Episodes()  # the row score of a multivariate detector
        self.n_rows = 0
        self.protected_run: list[int] = []  # anomalous values in a row not learned, per channel
        # Last input offset reflected in this state, per "topic:partition": after a
        # restart, inputs at or below it are already learned and are skipped.
        self.offsets: dict[str, int] = {}
        # The offsets as this process loaded the state (not stored): an input at or
        # below them was learned by an earlier owner (see Pipeline._is_replay).
        self.loaded_offsets: dict[str, int] = {}
        self.spots: dict[int, SPOT] = {}  # per-key thresholds (channel, or -1 for the row)
        # their levels as last computed (a cache, not state)
        self.spot_levels: dict[int, SpotLevels] = {}
        self.incidents = IncidentTracker()  # all of the device's streams in one incident
        self.feedback = KeyFeedback()
        # The last scores per channel, for the HTTP API only (in memory, not persisted).
        self.recent = RecentScores()

    def _new_detector(self) -> Detector:
        return detectors.create(self.detector_spec["name"], **self.detector_spec.get("params", {}))

    def channel(self, sensor: str) -> int:
        """The channel of ``sensor``, added on first sight (callers check the limit)."""
        i = self.index.get(sensor)
        if i is not None:
            return i
        i = len(self.sensors)
        self.sensors.append(sensor)
        self.index[sensor] = i
        self.episodes.append(Episodes())
        self.last_values.append(float("nan"))
        try:
            self.detector.grow(len(self.sensors))  # type: ignore[attr-defined]
        except (NotImplementedError, AttributeError):
            # Rebuild: the model restarts its warm-up, which costs less than a wrong
            # width; it only happens when a device reveals a sensor late.
            self.detector = self._new_detector()
        return i

    @property
    def multivariate(self) -> bool:
        return self.detector.kind == "multivariate"

    def remember(self, channel: int, ts: float, score: float) -> None:
        """Keep ``(ts, score)`` among the channel's last :data:`RECENT_SCORES`."""
        self.recent.add(channel, ts, score)

    @property
    def stack_key(self) -> str:
        """Devices with equal keys have detectors of one type and parameters (stackable)."""
        cached = self._stack_key
        if cached is None or cached[0] is not self.detector:  # the detector was rebuilt
            params = orjson.dumps(self.detector.params(), option=orjson.OPT_SORT_KEYS)
            cached = self._stack_key = (self.detector, self.detector.name + params.decode())
        return cached[1]

    @property
    def joint(self) -> bool:
        """Whether this device's readings are assembled into full rows (see :mod:`stream.rows`)."""
        return self.multivariate or self.causality is not None

    def assemble(self, readings: list[tuple[int, float, float]]) -> list[Row]:
        """Push ``(channel, ts, value)`` readings in order; return the rows they closed."""
        return self.rows.push_many(readings, len(self.sensors))

    def score_learn(
        self, rows: np.ndarray, protect: LearningGuard | None = None, surprise: bool = False
    ) -> np.ndarray:
        """Prequential scores: ``(n, d)`` per sensor, or ``(n,)`` per row (multivariate).

        A univariate detector skips NaN (a sensor silent at that time); a multivariate
        one expects assembled rows (:meth:`assemble`) and skips rows with a NaN. With
        ``surprise`` the values are surprises ``-log10(tail)`` instead of scores
        (:meth:`detectors.base.Detector.surprise_learn_many`).

        With a ``protect`` guard, values scoring at or above its threshold are not
        learned (the model is protected from the anomaly), until ``max_run`` of them in
        a row: then the change is taken as the new normal and learned.
        """
        self.n_rows += len(rows)
        data = rows
        if protect is None:
            step = self.detector.surprise_learn_many if surprise else self.detector.score_learn_many
            scores = np.asarray(step(data), dtype=np.float64)
            return scores.reshape(len(rows), -1) if scores.ndim == 2 else scores
        width = 1 if self.multivariate else len(self.sensors)
        if len(self.protected_run) != width:
            self.protected_run = [0] * width
        run = np.asarray(self.protected_run, dtype=np.int64)
        limit = protect.threshold
        if surprise:
            limit = float(score_to_surprise(protect.threshold))
        univariate = self.detector if isinstance(self.detector, UnivariateDetector) else None
        out = []
        for row in data:
            if surprise and univariate is not None:
                value = univariate.surprise_one(row)
            elif surprise:
                value = score_to_surprise(self.detector.score_one(row))
            else:
                value = self.detector.score_one(row)
            score = np.atleast_1d(np.asarray(value, dtype=np.float64))
            hold = (score >= limit) & (run < protect.max_run)
            run = np.where(score >= limit, run + 1, 0)
            if self.multivariate:
                if hold[0]:
                    self.detector.hold_one(row)  # seen (lags move on), not learned
                else:
                    self.detector.learn_one(row)
            else:
                self.detector.learn_one(np.where(hold, np.nan, row))
            out.append(score if not self.multivariate else score[0])
        self.protected_run = [int(v) for v in run]
        return np.asarray(out, dtype=np.float64)

    def explain(self, row: np.ndarray) -> dict[str, float] | None:
        """Shares of each sensor in a multivariate score (after the fact: current model)."""
        fn = getattr(self.detector, "explain_one", None)
        if fn is None or not np.isfinite(row).all():
            return None
        shares = np.asarray(fn(row), dtype=np.float64)
        return {s: float(v) for s, v in zip(self.sensors, shares, strict=True)}

    def check_causality(self, rows: np.ndarray) -> list[tuple[int, CausalityFinding]]:
        """Feed assembled rows to the Granger monitor; return findings with row indexes."""
        granger = self.granger_monitor()
        if granger is None:
            return []
        found: list[tuple[int, CausalityFinding]] = []
        for i, row in enumerate(rows):
            if np.isfinite(row).all():
                found.extend((i, f) for f in granger.update(row))
        return found

    def granger_monitor(self) -> GrangerMonitor | None:
        """The Granger monitor of the device's current sensors (``None`` without causality
        checks or with fewer than two sensors)."""
        if self.causality is None or len(self.sensors) < 2:
            return None
        if self.granger is None or self.granger.sensors != self.sensors:
            # A new sensor changes the graph's nodes: the monitor learns afresh.
            self.granger = GrangerMonitor(sensors=list(self.sensors), **self.causality)
        return self.granger

    def expected(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The detector's expected value and scale per channel, when it can tell."""
        fn = getattr(self.detector, "expected", None)
        if fn is None:
            return None
        loc, scale = fn()
        if len(loc) != len(self.sensors):
            return None
        return np.asarray(loc), np.asarray(scale)

    def adopt(self, device: str, warmup: int, own_warmup: int) -> None:
        """Make this model (a warmed-up peer's, restored) the start of a new ``device``.

        What the peer learned stays: detector statistics, per-key SPOT thresholds. What
        belongs to the peer goes: its episodes, incidents, verdicts, input offsets, last
        values and the Granger window (its causal graph is learned afresh). The new
        device learns ``own_warmup`` samples before it may alarm, instead of ``warmup``.
        """
        self.device = device
        seen = max(warmup - own_warmup, 0)
        self.episodes = [Episodes() for _ in self.sensors]
        for episodes in self.episodes:
            episodes.n_seen = seen
        self.device_episodes = Episodes()
        self.device_episodes.n_seen = seen
        self.last_values = [float("nan")] * len(self.sensors)
        self.rows = RowAssembler()
        self.granger = None
        self.offsets = {}
        self.protected_run = []
        self.incidents = IncidentTracker()
        self.feedback = KeyFeedback()
        self.recent = RecentScores()

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "device": self.device,
            "sensors": self.sensors,
            "detector": self.detector.snapshot(),
            "episodes": [e.to_dict() for e in self.episodes],
            "last": self.last_values,
            "rows": self.n_rows,
            "protected": self.protected_run,
            "offsets": self.offsets,
            "spots": {str(c): sp.snapshot() for c, sp in self.spots.items()},
            "device_episodes": self.device_episodes.to_dict(),
            "granger": None if self.granger is None else self.granger.snapshot(),
            "assembler": self.rows.to_dict(),
            "incidents": self.incidents.to_dict(),
            "feedback": self.feedback.to_dict(),
        }

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        detector_spec: dict[str, Any],
        max_sensors: int,
        causality: dict[str, Any] | None = None,
    ) -> DeviceModel:
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            raise StateError("device state of an unknown version")
        model = cls(str(data["device"]), detector_spec, max_sensors, causality)
        try:
            model.sensors = [str(s) for s in data["sensors"]]
            model.index = {s: i for i, s in enumerate(model.sensors)}
            model.detector = detectors.restore(data["detector"])
            model.episodes = [Episodes.from_dict(e) for e in data["episodes"]]
            # NaN (no value yet) is stored as JSON null.
            model.last_values = [float("nan") if v is None else float(v) for v in data["last"]]
            model.n_rows = int(data["rows"])
            model.protected_run = [int(v) for v in data.get("protected", [])]
            model.offsets = {str(k): int(v) for k, v in data.get("offsets", {}).items()}
            model.spots = {int(c): SPOT.restore(sp) for c, sp in data.get("spots", {}).items()}
            model.device_episodes = Episodes.from_dict(data["device_episodes"])
            if data["granger"] is not None and causality is not None:
                try:
                    model.granger = GrangerMonitor.restore(data["granger"])
                except SnapshotError as exc:
                    # An older format (an upgrade): relearn the causal graph only, keep
                    # the rest of the device's state.
                    log.warning("causal checks of %r start afresh: %s", model.device, exc)
                    model.granger = None
            if data.get("assembler") is not None:
                model.rows = RowAssembler.from_dict(data["assembler"])
            if data.get("incidents") is not None:
                model.incidents = IncidentTracker.from_dict(data["incidents"])
            if data.get("feedback") is not None:
                model.feedback = KeyFeedback.from_dict(data["feedback"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"corrupt device state: {exc}") from exc
        if not (len(model.episodes) == len(model.sensors) == len(model.last_values)):
            raise StateError("corrupt device state: sensor lists disagree")
        return model

    def state_size(self) -> int:
        granger = 0 if self.granger is None else self.granger.state_size()
        spots = sum(sp.state_size() for sp in self.spots.values())
        return self.detector.state_size() + granger + spots + 48 * len(self.sensors)


class LogSourceModel:
    """All that Vigil keeps for one log key (a user or a host).

    * a :class:`~detectors.logs.templates.TemplateMiner` (Drain) turning lines into
      template ids, whose ids stay stable across restarts through the snapshot;
    * a :class:`~detectors.logs.rare.RareTemplateDetector` over ``(source, template)``:
      a template rare or new for this key and source;
    * an EWMA control chart (:class:`~detectors.univariate.ewma.EWMAChart`) of each
      event's surprise ``-log p(template)``: one rare command is common enough, a run
      of them (another person's habits, an attack script) moves the chart;
    * a :class:`~detectors.logs.markov.MarkovSequenceDetector` of which template
      follows which, and an EWMA chart of its surprise: known commands in an order
      unusual for this key;
    * :class:`~detectors.logs.rates.TemplateRates`: per-template counts per time bucket
      through a robust z-score: bursts (and, for a new template, its first burst);
    * an :class:`~detectors.logs.auth.AuthDetector` for login events: failure bursts,
      a new source address, an unusual hour.
    """

    def __init__(
        self,
        key: str,
        max_templates: int,
        rate_bucket_s: float = 60.0,
        rate_templates: int = 32,
    ) -> None:
        self.key = key
        self.max_templates = max_templates
        self.miner = TemplateMiner()
        self.rare = RareTemplateDetector(max_templates=max_templates)
        self.auth = AuthDetector()
        self.surprise = EWMAChart(lam=0.1, warmup=50)
        # The order of the key's templates (commands): a Markov chain and its chart.
        self.sequence = MarkovSequenceDetector(warmup=50, max_templates=max_templates)
        self.sequence_chart = EWMAChart(lam=0.1, warmup=50)
        self.rates = TemplateRates(bucket_s=rate_bucket_s, max_templates=rate_templates)
        self.last_lines: dict[str, str] = {}  # per rated template, in memory only
        self.episodes: dict[str, Episodes] = {}  # per log detector
        self.offsets: dict[str, int] = {}  # as DeviceModel.offsets
        self.loaded_offsets: dict[str, int] = {}  # as DeviceModel.loaded_offsets
        self.n_seen = 0
        self.incidents = IncidentTracker()
        self.feedback = KeyFeedback()

    def surprise_score(self, surprise: float, chart: EWMAChart | None = None) -> float:
        """Score of a run of surprise on ``chart`` (one-sided: only more surprise counts)."""
        chart = self.surprise if chart is None else chart
        z = float(chart.chart_zscores(np.array([surprise]))[0])
        chart.learn_one(surprise)
        return float(tail_to_score(normal_two_sided_tail(np.array([z])))[0]) if z > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": LOG_STATE_VERSION,
            "key": self.key,
            "n": self.n_seen,
            "miner": self.miner.snapshot(),
            "rare": self.rare.snapshot(),
            "auth": self.auth.snapshot(),
            "surprise": self.surprise.snapshot(),
            "sequence": self.sequence.snapshot(),
            "sequence_chart": self.sequence_chart.snapshot(),
            "rates": self.rates.to_dict(),
            "episodes": {k: e.to_dict() for k, e in self.episodes.items()},
            "offsets": self.offsets,
            "incidents": self.incidents.to_dict(),
            "feedback": self.feedback.to_dict(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], max_templates: int) -> LogSourceModel:
        if not isinstance(data, dict) or data.get("v") != LOG_STATE_VERSION:
            raise StateError("log state of an unknown version")
        try:
            model = cls(str(data["key"]), max_templates)
            model.n_seen = int(data["n"])
            model.miner = TemplateMiner.restore(data["miner"])
            model.rare = RareTemplateDetector.restore(data["rare"])
            model.auth = AuthDetector.restore(data["auth"])
            model.surprise = EWMAChart.restore(data["surprise"])
            if data.get("sequence") is not None:
                model.sequence = MarkovSequenceDetector.restore(data["sequence"])
                model.sequence_chart = EWMAChart.restore(data["sequence_chart"])
            if data.get("rates") is not None:
                model.rates = TemplateRates.from_dict(data["rates"])
            model.episodes = {str(k): Episodes.from_dict(e) for k, e in data["episodes"].items()}
            model.offsets = {str(k): int(v) for k, v in data.get("offsets", {}).items()}
            if data.get("incidents") is not None:
                model.incidents = IncidentTracker.from_dict(data["incidents"])
            if data.get("feedback") is not None:
                model.feedback = KeyFeedback.from_dict(data["feedback"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"corrupt log state: {exc}") from exc
        return model
