"""The pipeline core: decode, route by key, detect, decide — no Kafka here.

Front doors (the faust worker, the embedded runner, tests) hand it batches of
:class:`Record` (bytes with where they came from) and publish what it returns: anomaly
events and dead-letter records. Per-key state lives in memory while hot and is written
to a :class:`StateStore` on :meth:`Pipeline.flush`; a key missing from memory is loaded
from the store, so a worker that takes over a partition resumes the previous owner's
models. Nothing a message contains can raise out of :meth:`process_sensors` or
:meth:`process_logs`: every failure becomes a dead-letter record with a reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from stream import metrics
from stream.codecs import (
    DecodeError,
    InputLimits,
    dead_letter,
    decode_log_message,
    decode_sensor_message,
    event_id,
)
from stream.decide import SEVERITY_RANK, Decision, Thresholds
from stream.events import AnomalyEvent, DeadLetter, LogRecord, SensorReading
from stream.settings import Settings
from stream.state import DeviceModel, LogSourceModel, StateError, log_pattern

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Record:
    """One input message: its bytes and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None


@dataclass(slots=True)
class BatchResult:
    """What one batch produced."""

    anomalies: list[AnomalyEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    processed: int = 0
    readings: int = 0


class StateStore(Protocol):
    """Where per-key state snapshots live between batches (a faust table, a dict)."""

    def get(self, key: str) -> bytes | None: ...

    def __setitem__(self, key: str, value: bytes) -> None: ...


class MemoryStore(dict[str, bytes]):
    """A :class:`StateStore` in a dict: for the embedded runner and tests."""


def _spec_version(spec: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return f"{spec['name']}:{digest}"


class Pipeline:
    """Decode, route by key, detect and decide for sensor and log streams."""

    def __init__(
        self,
        settings: Settings,
        device_store: StateStore | None = None,
        log_store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.device_store: StateStore = device_store if device_store is not None else MemoryStore()
        self.log_store: StateStore = log_store if log_store is not None else MemoryStore()
        self.clock = clock
        self.limits = InputLimits(
            max_message_bytes=settings.max_message_bytes,
            max_sensors_per_device=settings.max_sensors_per_device,
            max_future_skew_s=settings.max_future_skew_s,
        )
        self.thresholds = Thresholds.from_rates(settings.warning_rate, settings.critical_rate)
        self.log_thresholds = Thresholds.from_rates(
            settings.log_warning_rate, settings.log_critical_rate
        )
        self.detector_spec = settings.sensor_detector.model_dump()
        self.model_version = _spec_version(self.detector_spec)
        self.devices: dict[str, DeviceModel] = {}
        self.log_sources: dict[str, LogSourceModel] = {}
        self._dirty_devices: set[str] = set()
        self._dirty_logs: set[str] = set()
        self._open: dict[str, int] = {"warning": 0, "critical": 0}

    # -- front-door API --------------------------------------------------------------
    def process_sensors(self, records: Sequence[Record]) -> BatchResult:
        """Score every reading in ``records``; rejects become dead letters.

        Readings are grouped by device (route by key) and each device's readings go
        through its detector as one matrix of rows (one row per tick), so the per-call
        cost of the detector is paid per tick, not per reading.
        """
        started = time.perf_counter()
        result = BatchResult()
        now = self.clock()
        newest = 0.0
        by_device: dict[str, list[tuple[Record, list[SensorReading]]]] = {}
        for rec in records:
            try:
                readings = decode_sensor_message(rec.value, rec.key, self.limits, now)
                if readings:
                    self._claim_channels(readings)
            except DecodeError as exc:
                self._reject(result, rec, exc.reason, str(exc), now)
                continue
            if readings:
                by_device.setdefault(readings[0].device, []).append((rec, readings))
            else:
                self._accept(result, rec, 0)
        for device, items in by_device.items():
            try:
                newest = max(newest, self._score_device(device, items, now, result))
            except Exception as exc:  # a bug must not kill the worker or lose the input
                log.exception("processing failed for device %r; its state is reset", device)
                # A state that made the code fail once would fail every batch: start the
                # key afresh instead of dead-lettering it forever.
                self.devices[device] = DeviceModel(
                    device, self.detector_spec, self.settings.max_sensors_per_device
                )
                self._dirty_devices.add(device)
                for rec, _ in items:
                    self._reject(result, rec, "processing_error", repr(exc), now)
                continue
            for rec, readings in items:
                self._accept(result, rec, len(readings))
        self._observe_batch(started, now, newest, result)
        metrics.ACTIVE_KEYS.labels(stream="sensors").set(len(self.devices))
        return result

    def process_logs(self, records: Sequence[Record]) -> BatchResult:
        """Score every log event in ``records``; rejects become dead letters."""
        started = time.perf_counter()
        result = BatchResult()
        now = self.clock()
        newest = 0.0
        for rec in records:
            try:
                event = decode_log_message(rec.value, rec.key, self.limits, now)
            except DecodeError as exc:
                self._reject(result, rec, exc.reason, str(exc), now)
                continue
            try:
                self._score_log(event, now, result)
                newest = max(newest, event.ts)
            except Exception as exc:
                log.exception(
                    "processing failed for %s[%d]@%d", rec.topic, rec.partition, rec.offset
                )
                self._reject(result, rec, "processing_error", repr(exc), now)
                continue
            self._accept(result, rec, 0)
        self._observe_batch(started, now, newest, result)
        metrics.ACTIVE_KEYS.labels(stream="logs").set(len(self.log_sources))
        return result

    def flush(self) -> int:
        """Write the state of every key changed since the last flush to the stores."""
        for device in self._dirty_devices:
            self.device_store[device] = orjson.dumps(
                self.devices[device].snapshot(), option=orjson.OPT_SERIALIZE_NUMPY
            )
        for key in self._dirty_logs:
            self.log_store[key] = orjson.dumps(self.log_sources[key].snapshot())
        n = len(self._dirty_devices) + len(self._dirty_logs)
        self._dirty_devices.clear()
        self._dirty_logs.clear()
        return n

    def forget(self, keys: Iterable[str] | None = None) -> None:
        """Drop hot state (all, or some keys), e.g. when partitions are revoked.

        Call :meth:`flush` first: what was not flushed is lost from memory and will be
        rebuilt from the store, which is the point after a rebalance.
        """
        if keys is None:
            self.devices.clear()
            self.log_sources.clear()
            return
        for key in keys:
            self.devices.pop(key, None)
            self.log_sources.pop(key, None)

    # -- sensors ---------------------------------------------------------------------
    def _device(self, device: str) -> DeviceModel:
        model = self.devices.get(device)
        if model is not None:
            return model
        raw = self.device_store.get(device)
        if raw is not None:
            try:
                model = DeviceModel.restore(
                    orjson.loads(raw), self.detector_spec, self.settings.max_sensors_per_device
                )
                metrics.STATE_RESTORES.labels(outcome="ok").inc()
            except (StateError, orjson.JSONDecodeError, ValueError) as exc:
                # A state we cannot read is counted and replaced, never executed.
                log.warning("state of device %r unreadable, starting afresh: %s", device, exc)
                metrics.STATE_RESTORES.labels(outcome="corrupt").inc()
                model = None
        if model is None:
            model = DeviceModel(device, self.detector_spec, self.settings.max_sensors_per_device)
        self.devices[device] = model
        return model

    def _claim_channels(self, readings: list[SensorReading]) -> None:
        """Give new sensors a channel, or refuse the message past the sensor limit."""
        model = self._device(readings[0].device)
        new = {r.sensor for r in readings} - model.index.keys()
        if len(model.sensors) + len(new) > self.settings.max_sensors_per_device:
            raise DecodeError(
                "too_many_sensors",
                f"device {model.device!r} would exceed {self.settings.max_sensors_per_device} sensors",
            )
        for r in readings:
            model.channel(r.sensor)

    def _score_device(
        self,
        device: str,
        items: list[tuple[Record, list[SensorReading]]],
        now: float,
        result: BatchResult,
    ) -> float:
        """Score a device's readings of this batch; returns the newest event time."""
        model = self._device(device)
        d = len(model.sensors)
        # One row per tick: a new row starts when the time moves or a sensor repeats.
        rows: list[np.ndarray] = []
        placed: list[tuple[int, int, SensorReading]] = []
        row: np.ndarray | None = None
        row_ts = None
        for _, readings in items:
            for r in readings:
                c = model.index[r.sensor]
                if row is None or r.ts != row_ts or not np.isnan(row[c]):
                    row = np.full(d, np.nan)
                    rows.append(row)
                    row_ts = r.ts
                row[c] = r.value
                placed.append((len(rows) - 1, c, r))
        scores = model.score_learn(np.vstack(rows))
        self._dirty_devices.add(device)
        expected = None
        newest = 0.0
        for i, c, r in placed:
            newest = max(newest, r.ts)
            model.last_values[c] = r.value
            score = float(scores[i, c]) if scores.ndim == 2 else float(scores[i])
            key = f"{device}/{r.sensor}"
            decision = model.episodes[c].step(
                score, r.ts, self.thresholds, self.settings.warmup, self.settings.cooldown, key
            )
            if decision is None:
                continue
            self._track_open(decision)
            if decision.action == "close":
                continue
            if expected is None:
                expected = model.expected() or (np.full(d, np.nan), np.full(d, np.nan))
            result.anomalies.append(
                self._sensor_anomaly(r, key, score, decision, expected[0][c], expected[1][c], now)
            )
        return newest

    def _sensor_anomaly(
        self,
        r: SensorReading,
        key: str,
        score: float,
        decision: Decision,
        expected: float,
        scale: float,
        now: float,
    ) -> AnomalyEvent:
        details: dict[str, Any] = {"action": decision.action}
        if np.isfinite(scale):
            details["expected_scale"] = float(scale)
        metrics.ANOMALIES.labels(
            kind="sensor", detector=self.detector_spec["name"], severity=decision.severity
        ).inc()
        return AnomalyEvent(
            id=event_id(key, self.model_version, r.ts, decision.action),
            kind="sensor",
            key=key,
            detector=self.detector_spec["name"],
            event_ts=r.ts,
            detected_ts=now,
            score=score,
            threshold=self._threshold_of(decision.severity),
            severity=decision.severity,  # type: ignore[arg-type]
            model_version=self.model_version,
            device=r.device,
            sensor=r.sensor,
            actual={r.sensor: r.value},
            expected={r.sensor: float(expected)} if np.isfinite(expected) else None,
            attribution={r.sensor: 1.0},
            episode_id=decision.episode_id,
            reason=f"{r.sensor} scored {score:.6f} (>= {decision.severity} threshold)",
            details=details,
        )

    # -- logs ------------------------------------------------------------------------
    def _log_source(self, key: str) -> LogSourceModel:
        model = self.log_sources.get(key)
        if model is not None:
            return model
        raw = self.log_store.get(key)
        if raw is not None:
            try:
                model = LogSourceModel.restore(orjson.loads(raw), self.settings.max_log_templates)
                metrics.STATE_RESTORES.labels(outcome="ok").inc()
            except (StateError, orjson.JSONDecodeError, ValueError) as exc:
                log.warning("state of log key %r unreadable, starting afresh: %s", key, exc)
                metrics.STATE_RESTORES.labels(outcome="corrupt").inc()
                model = None
        if model is None:
            model = LogSourceModel(key, self.settings.max_log_templates)
        self.log_sources[key] = model
        return model

    def _score_log(self, event: LogRecord, now: float, result: BatchResult) -> None:
        key = event.user or event.host
        model = self._log_source(key)
        pattern = log_pattern(event.message)
        seen_before = model.observe(pattern)
        self._dirty_logs.add(key)
        if model.n_seen <= self.settings.warmup or seen_before:
            return
        # Good-Turing: the chance that the next message shows a new pattern is about the
        # share of patterns seen once; a source that always says new things scores low.
        singletons = sum(1 for c in model.patterns.values() if c == 1)
        p_new = (singletons + 1) / (model.n_seen + 1)
        score = 1.0 - p_new
        severity = self.log_thresholds.severity(score)
        if severity is None:
            return
        result.anomalies.append(
            AnomalyEvent(
                id=event_id(key, "new_pattern", event.ts, pattern),
                kind="log",
                key=key,
                detector="new_pattern",
                event_ts=event.ts,
                detected_ts=now,
                score=score,
                threshold=getattr(self.log_thresholds, severity),
                severity=severity,  # type: ignore[arg-type]
                model_version="new_pattern:1",
                host=event.host,
                user=event.user,
                reason=f"message pattern never seen for {key!r} in {model.n_seen - 1} events",
                details={
                    "pattern": pattern,
                    "lines": [event.message[:1000]],
                    "source": event.source,
                },
            )
        )
        metrics.ANOMALIES.labels(kind="log", detector="new_pattern", severity=severity).inc()

    # -- shared ----------------------------------------------------------------------
    def _threshold_of(self, severity: str) -> float:
        return self.thresholds.critical if severity == "critical" else self.thresholds.warning

    def _track_open(self, decision: Decision) -> None:
        if decision.action == "open":
            self._open[decision.severity] += 1
        elif decision.action == "escalate":
            self._open["warning"] = max(self._open["warning"] - 1, 0)
            self._open["critical"] += 1
        elif decision.action == "close":
            self._open[decision.severity] = max(self._open[decision.severity] - 1, 0)
        for sev in SEVERITY_RANK:
            metrics.INCIDENTS_OPEN.labels(severity=sev).set(self._open[sev])

    def _accept(self, result: BatchResult, rec: Record, n_readings: int) -> None:
        result.processed += 1
        result.readings += n_readings
        metrics.EVENTS.labels(topic=rec.topic, outcome="processed").inc()

    def _reject(
        self, result: BatchResult, rec: Record, reason: str, error: str, now: float
    ) -> None:
        result.dead_letters.append(
            dead_letter(
                rec.value, rec.key, reason, error, rec.topic, rec.partition, rec.offset, now
            )
        )
        metrics.EVENTS.labels(topic=rec.topic, outcome="dead_letter").inc()
        metrics.DEAD_LETTERS.labels(reason=reason).inc()

    def _observe_batch(
        self, started: float, now: float, newest: float, result: BatchResult
    ) -> None:
        metrics.PROCESSING.observe(time.perf_counter() - started)
        if newest > 0:
            metrics.EVENT_LAG.observe(max(now - newest, 0.0))
        metrics.READINGS.inc(result.readings)
