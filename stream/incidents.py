"""Incidents: one per anomalous episode of a key, whatever its sensors and detectors.

Anomaly events are per scored stream (a sensor, a device's joint score, a causal
edge, a log detector), and a pump whose bearing fails can raise a dozen of them at
once. An operator wants one incident: opened by the first anomaly of the key, updated
when another sensor or detector joins or the severity rises, closed when every
contributing episode has closed (and, for one-shot findings such as a broken causal
link, when the key has been quiet for ``idle_s`` of event time). Every event of an
incident carries the same incident id; each event's own id is deterministic, so a
repeat published after a restart can be dropped by consumers.

Examples
--------
>>> from stream.events import AnomalyEvent
>>> def anomaly(sensor, ts, severity="warning"):
...     return AnomalyEvent(id=f"a{ts}", kind="sensor", key=f"pump-1/{sensor}",
...         detector="forecast", event_ts=ts, detected_ts=ts, score=0.9999,
...         threshold=0.999, severity=severity, model_version="1", device="pump-1",
...         sensor=sensor, episode_id=f"e-{sensor}")
>>> tracker = IncidentTracker()
>>> opened = tracker.on_anomaly("pump-1", anomaly("flow", 10.0), "pump-1/flow", now=10.0)
>>> updated = tracker.on_anomaly("pump-1", anomaly("temp", 12.0, "critical"), "pump-1/temp",
...     now=12.0)
>>> tracker.on_close("pump-1", "pump-1/flow", 30.0, now=30.0) is None  # temp still open
True
>>> closed = tracker.on_close("pump-1", "pump-1/temp", 40.0, now=40.0)
>>> [e.action for e in (opened, updated, closed)], closed.severity, closed.anomalies
(['open', 'update', 'close'], 'critical', 2)
>>> len({e.incident_id for e in (opened, updated, closed)})
1
"""

from __future__ import annotations

from typing import Any

from stream.codecs import event_id
from stream.decide import SEVERITY_RANK
from stream.events import AnomalyEvent, Contributor, IncidentEvent


class IncidentTracker:
    """The open incident of one key (a device, or a log key), if any."""

    __slots__ = (
        "anomalies",
        "contributors",
        "incident_id",
        "last_ts",
        "opened_ts",
        "seq",
        "severity",
        "updates",
    )

    def __init__(self) -> None:
        self.seq = 0  # incidents opened on this key so far
        self.incident_id: str | None = None
        self.opened_ts = 0.0
        self.last_ts = 0.0
        self.severity = "warning"
        self.anomalies = 0
        self.updates = 0
        # stream key -> [detector, episode id, severity, still open]
        self.contributors: dict[str, list[Any]] = {}

    @property
    def open(self) -> bool:
        return self.incident_id is not None

    def on_anomaly(
        self, key: str, anomaly: AnomalyEvent, stream: str, now: float, one_shot: bool = False
    ) -> IncidentEvent | None:
        """An anomaly of ``stream`` (opened or escalated episode, or a one-shot finding)."""
        ts = anomaly.event_ts
        if self.incident_id is None:
            self.seq += 1
            self.incident_id = event_id("incident", key, ts, self.seq)
            self.opened_ts = ts
            self.severity = anomaly.severity
            self.anomalies = 0
            self.updates = 0
            self.contributors = {}
            action = "open"
        else:
            known = self.contributors.get(stream)
            rises = SEVERITY_RANK[anomaly.severity] > SEVERITY_RANK[self.severity]
            action = "update" if known is None or rises or not known[3] else ""
            if rises:
                self.severity = anomaly.severity
        self.contributors[stream] = [
            anomaly.detector,
            anomaly.episode_id,
            anomaly.severity,
            not one_shot,
        ]
        self.anomalies += 1
        self.last_ts = max(self.last_ts, ts)
        if not action:
            return None
        return self._event(key, action, now, anomaly.reason)

    def on_close(self, key: str, stream: str, ts: float, now: float) -> IncidentEvent | None:
        """The episode of ``stream`` closed; the incident closes with its last episode."""
        entry = self.contributors.get(stream)
        if self.incident_id is None or entry is None:
            return None
        entry[3] = False
        self.last_ts = max(self.last_ts, ts)
        if any(c[3] for c in self.contributors.values()):
            return None
        return self._close(key, ts, now)

    def on_quiet(self, key: str, ts: float, idle_s: float, now: float) -> IncidentEvent | None:
        """Close an incident held open only by one-shot findings after ``idle_s``."""
        if self.incident_id is None or any(c[3] for c in self.contributors.values()):
            return None
        if ts - self.last_ts < idle_s:
            return None
        return self._close(key, ts, now)

    def _close(self, key: str, ts: float, now: float) -> IncidentEvent:
        event = self._event(key, "close", now, None, closed_ts=ts)
        self.incident_id = None
        self.contributors = {}
        return event

    def _event(
        self,
        key: str,
        action: str,
        now: float,
        reason: str | None,
        closed_ts: float | None = None,
    ) -> IncidentEvent:
        assert self.incident_id is not None
        self.updates += 1
        return IncidentEvent(
            id=event_id(self.incident_id, action, self.updates),
            incident_id=self.incident_id,
            action=action,  # type: ignore[arg-type]
            key=key,
            severity=self.severity,  # type: ignore[arg-type]
            opened_ts=self.opened_ts,
            last_ts=self.last_ts,
            closed_ts=closed_ts,
            detected_ts=now,
            anomalies=self.anomalies,
            contributors=[
                Contributor(stream=s, detector=c[0], episode_id=c[1], severity=c[2], open=c[3])
                for s, c in sorted(self.contributors.items())
            ],
            reason=reason,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.incident_id,
            "opened": self.opened_ts,
            "last": self.last_ts,
            "severity": self.severity,
            "anomalies": self.anomalies,
            "updates": self.updates,
            "contributors": self.contributors,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentTracker:
        t = cls()
        t.seq = int(data["seq"])
        t.incident_id = None if data["id"] is None else str(data["id"])
        t.opened_ts = float(data["opened"])
        t.last_ts = float(data["last"])
        t.severity = data["severity"] if data["severity"] in SEVERITY_RANK else "warning"
        t.anomalies = int(data["anomalies"])
        t.updates = int(data["updates"])
        t.contributors = {
            str(s): [str(c[0]), c[1], str(c[2]), bool(c[3])]
            for s, c in data["contributors"].items()
        }
        return t
