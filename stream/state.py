"""Per-key state: what Vigil remembers about one device or one log source.

A :class:`DeviceModel` holds, for each sensor of a device, a detector and the episode
state of the decision layer. A :class:`LogSourceModel` does the same for a log key
(host or user). Both snapshot to JSON-safe dicts (detector snapshots inside) that the
worker stores in a changelog-backed table, so a restarted worker resumes where it was.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

import detectors
from detectors.base import Detector
from stream.decide import Episodes

STATE_VERSION = 1


class StateError(ValueError):
    """A stored state is unreadable; the key restarts from scratch (and it is counted)."""


class DeviceModel:
    """All that Vigil keeps for one device: one detector over its sensors, and episodes.

    The detector is vectorised over the device's sensors (its channels); a sensor seen
    for the first time becomes a new channel (``grow``), or, for a detector that cannot
    grow, the detector is rebuilt while it is still young.
    """

    def __init__(self, device: str, detector_spec: dict[str, Any], max_sensors: int) -> None:
        self.device = device
        self.detector_spec = detector_spec
        self.max_sensors = max_sensors
        self.sensors: list[str] = []
        self.index: dict[str, int] = {}
        self.episodes: list[Episodes] = []
        self.last_values: list[float] = []
        self.detector: Detector = self._new_detector()
        self.n_rows = 0

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

    def score_learn(self, rows: np.ndarray) -> np.ndarray:
        """Prequential scores of rows of channel values (NaN where a sensor is silent)."""
        self.n_rows += len(rows)
        scores = np.asarray(self.detector.score_learn_many(rows), dtype=np.float64)
        return scores.reshape(len(rows), -1) if scores.ndim == 2 else scores

    def expected(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The detector's expected value and scale per channel, when it can tell."""
        fn = getattr(self.detector, "expected", None)
        if fn is None:
            return None
        loc, scale = fn()
        if len(loc) != len(self.sensors):
            return None
        return np.asarray(loc), np.asarray(scale)

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "device": self.device,
            "sensors": self.sensors,
            "detector": self.detector.snapshot(),
            "episodes": [e.to_dict() for e in self.episodes],
            "last": self.last_values,
            "rows": self.n_rows,
        }

    @classmethod
    def restore(
        cls, data: dict[str, Any], detector_spec: dict[str, Any], max_sensors: int
    ) -> DeviceModel:
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            raise StateError("device state of an unknown version")
        model = cls(str(data["device"]), detector_spec, max_sensors)
        try:
            model.sensors = [str(s) for s in data["sensors"]]
            model.index = {s: i for i, s in enumerate(model.sensors)}
            model.detector = detectors.restore(data["detector"])
            model.episodes = [Episodes.from_dict(e) for e in data["episodes"]]
            model.last_values = [float(v) for v in data["last"]]
            model.n_rows = int(data["rows"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"corrupt device state: {exc}") from exc
        if not (len(model.episodes) == len(model.sensors) == len(model.last_values)):
            raise StateError("corrupt device state: sensor lists disagree")
        return model

    def state_size(self) -> int:
        return self.detector.state_size() + 48 * len(self.sensors)


# Masks for the spine's log pattern detector: variable parts become placeholders so
# "Failed password for bob from 192.0.2.7 port 5122" and "... 192.0.2.9 port 4410"
# are one pattern.
_MASKS = (
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b"), "<HEX>"),
    (re.compile(r"(?:/[\w.\-]+)+/?"), "<PATH>"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<NUM>"),
)


def log_pattern(message: str) -> str:
    """The message with IPs, hex ids, paths and numbers masked."""
    out = message
    for regex, token in _MASKS:
        out = regex.sub(token, out)
    return " ".join(out.split())[:512]


class LogSourceModel:
    """All that Vigil keeps for one log key: the patterns it has seen, and episodes."""

    def __init__(self, key: str, max_patterns: int) -> None:
        self.key = key
        self.max_patterns = max_patterns
        self.patterns: dict[str, int] = {}
        self.n_seen = 0

    def observe(self, pattern: str) -> int:
        """Count ``pattern``; return how often it was seen before this time."""
        self.n_seen += 1
        before = self.patterns.get(pattern, 0)
        if before or len(self.patterns) < self.max_patterns:
            self.patterns[pattern] = before + 1
        return before

    def snapshot(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "key": self.key, "n": self.n_seen, "patterns": self.patterns}

    @classmethod
    def restore(cls, data: dict[str, Any], max_patterns: int) -> LogSourceModel:
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            raise StateError("log state of an unknown version")
        try:
            model = cls(str(data["key"]), max_patterns)
            model.n_seen = int(data["n"])
            model.patterns = {str(k): int(v) for k, v in data["patterns"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"corrupt log state: {exc}") from exc
        return model
