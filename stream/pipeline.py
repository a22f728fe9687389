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

import fnmatch
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np
import orjson

from detectors._arrays import surprise_to_score, surprise_to_score_one
from detectors.base import UnivariateDetector, as_univariate
from detectors.causality import CausalityFinding, GrangerMonitor
from detectors.causality.stacked import update_stacked
from detectors.logs.rates import RateRow
from detectors.stack_pool import StackPool
from detectors.stacking import MIN_KEYS, can_stack, stackable
from detectors.thresholds import SPOT
from stream import metrics
from stream.codecs import (
    DecodeError,
    InputLimits,
    dead_letter,
    decode_feedback,
    decode_log_input,
    decode_sensor_message,
    event_id,
)
from stream.decide import (
    SEVERITY_RANK,
    Decision,
    Episodes,
    SpotLevels,
    Thresholds,
    spot_refit_every,
)
from stream.events import AnomalyEvent, DeadLetter, IncidentEvent, SensorReading
from stream.incidents import IncidentTracker
from stream.logparse import LogEvent
from stream.rows import Row
from stream.settings import CausalitySpec, Settings
from stream.state import DeviceModel, LearningGuard, LogSourceModel, StateError
from stream.ticks import ReadingRows, tick_matrix

log = logging.getLogger(__name__)

# Dead-lettered offsets remembered per input partition (see Pipeline._rejected): far
# more than the inputs read again after a rebalance or commit repair.
REJECTED_MEMORY = 4096
# Offsets processed by this process remembered per input partition (see
# Pipeline._is_replay): re-reads start at the committed offset, seconds behind (faust
# repairs a commit stall after 10 to 30 s; at 2,000 inputs/s per partition this holds
# about 16 s). Older offsets count as processed, as a key's offset alone would say.
PROCESSED_MEMORY = 32_768


class ProcessedOffsets:
    """Offsets of one input partition this process has processed, the newest ones.

    Everything at or below ``floor`` counts as processed (forgotten to bound memory).

    Examples
    --------
    >>> seen = ProcessedOffsets(memory=8)
    >>> for offset in (10, 11, 12, 13, 14, 15, 16, 18, 19):  # 17 never came
    ...     seen.add(offset)
    >>> 17 in seen, 18 in seen, 11 in seen  # 10 to 15 were forgotten: at or below the floor
    (False, True, True)
    """

    __slots__ = ("floor", "memory", "seen")

    def __init__(self, memory: int = PROCESSED_MEMORY) -> None:
        self.floor = -1
        self.memory = memory
        self.seen: set[int] = set()

    def add(self, offset: int) -> None:
        seen = self.seen
        seen.add(offset)
        if len(seen) > self.memory:
            # Offsets arrive nearly in order: keep the newest half of the span.
            self.floor = max(self.floor, offset - self.memory // 2)
            self.seen = {o for o in seen if o > self.floor}

    def __contains__(self, offset: object) -> bool:
        return isinstance(offset, int) and (offset <= self.floor or offset in self.seen)


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
    incidents: list[IncidentEvent] = field(default_factory=list)
    # Anomalies and incidents of keys in shadow mode: for the shadow topic, not alerts.
    shadow: list[AnomalyEvent | IncidentEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    processed: int = 0
    readings: int = 0
    # Processed inputs per topic, added to the metrics once per batch (per record, the
    # counter's label lookup was a visible share of the kafka engine's profile).
    processed_by_topic: dict[str, int] = field(default_factory=dict)


class StateStore(Protocol):
    """Where per-key state snapshots live between batches (a faust table, a dict)."""

    def get(self, key: str) -> bytes | None: ...

    def __setitem__(self, key: str, value: bytes) -> None: ...


#: Receives every sensor score: (device, sensor, event time, value, score). The
#: evaluation harness uses it to score benchmarks point by point.
ScoreSink = Callable[[str, str, float, float, float], None]


class MemoryStore(dict[str, bytes]):
    """A :class:`StateStore` in a dict: for the embedded runner and tests."""


def _spec_version(spec: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return f"{spec['name']}:{digest}"


_NEVER = Thresholds(math.inf, math.inf)  # while a key's thresholds calibrate: none reached


@dataclass(frozen=True, slots=True)
class Suppression:
    """A maintenance window: anomalies of keys matching ``pattern`` are not published.

    ``pattern`` is a shell-style pattern matched against the anomaly's key, device,
    user and host; the window runs until ``until`` (epoch seconds, wall clock).
    """

    id: str
    pattern: str
    until: float
    reason: str = ""

    def covers(self, a: AnomalyEvent | IncidentEvent, now: float) -> bool:
        if now >= self.until:
            return False
        if isinstance(a, IncidentEvent):
            names: tuple[str | None, ...] = (a.key,)
        else:
            names = (a.key, a.device, a.user, a.host)
        return any(n is not None and fnmatch.fnmatchcase(n, self.pattern) for n in names)


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What a device group runs: its detector, model version and causality checks."""

    group: str
    detector_spec: dict[str, Any]
    model_version: str
    causality: dict[str, Any] | None
    export_edges: bool = False
    top_edges: int = 20
    shadow: bool = False
    cohort_prior: bool = False

    @classmethod
    def of(
        cls,
        group: str,
        detector_spec: dict[str, Any],
        causality: CausalitySpec,
        export_edges: bool = False,
        top_edges: int = 20,
        shadow: bool = False,
        cohort_prior: bool = False,
    ) -> DeviceProfile:
        return cls(
            group,
            detector_spec,
            _spec_version(detector_spec),
            dict(causality.params) if causality.enabled else None,
            export_edges,
            top_edges,
            shadow,
            cohort_prior,
        )


def _rest(rows: ReadingRows, head: np.ndarray | None) -> np.ndarray:
    """The rows of a device still to be judged (all, or all after its first)."""
    return rows.matrix if head is None else rows.matrix[1:]


def _readings(items: list[tuple[Record, list[SensorReading]]]) -> Iterable[SensorReading]:
    return (r for _, readings in items for r in readings)


def _pushed(
    model: DeviceModel, items: list[tuple[Record, list[SensorReading]]]
) -> list[tuple[int, float, float]]:
    """``(channel, ts, value)`` of a device's readings, in order, for its row assembler."""
    return [(model.index[r.sensor], r.ts, r.value) for r in _readings(items)]


@dataclass
class CheckedRows:
    """A device's rows closed in this batch, and their Granger findings with row
    indexes (``None`` until checked)."""

    closed: list[Row]
    findings: list[tuple[int, CausalityFinding]] | None = None
    matrix: np.ndarray | None = None  # the closed rows stacked, once made

    def rows(self) -> np.ndarray:
        """The closed rows as one matrix (made once)."""
        if self.matrix is None:
            self.matrix = np.vstack([row for _, row, _ in self.closed])
        return self.matrix


class Pipeline:
    """Decode, route by key, detect and decide for sensor and log streams."""

    def __init__(
        self,
        settings: Settings,
        device_store: StateStore | None = None,
        log_store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        score_sink: ScoreSink | None = None,
    ) -> None:
        self.settings = settings
        self.device_store: StateStore = device_store if device_store is not None else MemoryStore()
        self.log_store: StateStore = log_store if log_store is not None else MemoryStore()
        self.clock = clock
        self.score_sink = score_sink
        self.limits = InputLimits(
            max_message_bytes=settings.max_message_bytes,
            max_sensors_per_device=settings.max_sensors_per_device,
            max_future_skew_s=settings.max_future_skew_s,
        )
        self.thresholds = Thresholds.from_rates(settings.warning_rate, settings.critical_rate)
        # How keys are judged (see _judge); a warning rate inside SPOT's calibration
        # quantile is judged by the fixed thresholds as under "rate".
        self._policy = settings.thresholds
        if self._policy == "auto" and settings.warning_rate >= 1.0 - settings.spot_quantile:
            self._policy = "rate"
        self.log_thresholds = Thresholds.from_rates(
            settings.log_warning_rate, settings.log_critical_rate
        )
        self._default_profile = DeviceProfile.of(
            "default",
            settings.sensor_detector.model_dump(),
            settings.causality,
            shadow=settings.shadow,
            cohort_prior=settings.cohort_prior,
        )
        self._profiles = [
            (
                g.match,
                DeviceProfile.of(
                    g.name,
                    (g.detector or settings.sensor_detector).model_dump(),
                    g.causality or settings.causality,
                    g.export_edges,
                    g.top_edges,
                    settings.shadow if g.shadow is None else g.shadow,
                    settings.cohort_prior if g.cohort_prior is None else g.cohort_prior,
                ),
            )
            for g in settings.device_groups
        ]
        # Per group: (rows, device, snapshot) of its most experienced warmed-up device,
        # a new device's prior (cohort_prior).
        self._priors: dict[str, tuple[int, str, bytes]] = {}
        self._profile_cache: dict[str, DeviceProfile] = {}
        self._edge_avg: dict[str, dict[tuple[str, str], float]] = {}
        self.devices: dict[str, DeviceModel] = {}
        self.log_sources: dict[str, LogSourceModel] = {}
        self._dirty_devices: set[str] = set()
        # Keys a flush under way has still to write (begin_flush, flush_some); changes
        # after its start make keys dirty again, for the next flush.
        self._flushing_devices: dict[str, None] = {}
        self._flushing_logs: dict[str, None] = {}
        # Per kind of univariate detector (stack_key), its devices' channel state kept
        # stacked between batches (detectors.stack_pool).
        self._stack_pools: dict[str, StackPool] = {}
        self._dirty_logs: set[str] = set()
        self._open: dict[str, int] = {"warning": 0, "critical": 0}
        self.suppressions: dict[str, Suppression] = {}
        # Input partition of each key: outputs go to the same partition number, so an
        # exactly-once transaction (one per input partition) covers them.
        self.partition_of: dict[str, int] = {}
        # Per input partition, the offsets this process dead-lettered lately. An input
        # read again (faust re-reads from the committed offset after a rebalance or a
        # commit repair) is not dead-lettered twice; readings and log events have their
        # key's state for that (_unseen), a rejected input has no key state. Exact
        # offsets, not a high-water mark: an input dropped before it was processed and
        # read again later must still be dead-lettered.
        self._rejected: dict[tuple[str, int], set[int]] = {}
        # Per input partition ("topic:partition"), the offsets this process processed
        # lately: tells a re-read input that was processed here from one that never was
        # (faust sometimes never delivers the first input after a seek; see _is_replay).
        self._processed: dict[str, ProcessedOffsets] = {}
        self._guard = (
            LearningGuard(self.thresholds.warning, settings.protect_max)
            if settings.learning == "protect"
            else None
        )

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
        # route by key -> drop replays -> detect (stacked across devices) -> decide
        fresh: dict[str, list[tuple[Record, list[SensorReading]]]] = {}
        for device, items in by_device.items():
            try:
                fresh[device] = self._unseen(self._device(device), items)
            except Exception as exc:  # a bug must not kill the worker or lose the input
                self._device_failed(device, items, exc, now, result)
        stacked = self._score_stacked(fresh)
        checked, failed = self._check_causality_stacked(fresh)
        for device, items in fresh.items():
            if device in failed:
                self._device_failed(device, by_device[device], failed[device], now, result)
                continue
            try:
                newest = max(
                    newest,
                    self._score_device(
                        device, items, now, result, stacked.get(device), checked.get(device)
                    ),
                )
            except Exception as exc:  # a bug must not kill the worker or lose the input
                self._device_failed(device, by_device[device], exc, now, result)
                continue
            for rec, readings in by_device[device]:
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
                event = decode_log_input(rec.value, rec.key, self.limits, now)
            except DecodeError as exc:
                self._reject(result, rec, exc.reason, str(exc), now)
                continue
            # State lives under the message key: it decides the partition, so the
            # key's state and its input are owned by the same worker.
            state_key = (
                rec.key.decode("utf-8", "replace") if rec.key else (event.user or event.host)
            )
            model = self._log_source(state_key)
            if self._is_replay(model.offsets, model.loaded_offsets, rec):
                metrics.REPLAYED.inc()  # learned before a restart: see _unseen
                self._accept(result, rec, 0)
                continue
            self.partition_of[state_key] = rec.partition
            try:
                self._score_log(event, state_key, now, result)
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

    def process_feedback(self, records: Sequence[Record]) -> BatchResult:
        """Apply operators' verdicts (see :mod:`stream.feedback`) to their keys' state.

        The key is a device or a log key this worker has state for (the feedback topic
        is partitioned like the inputs, so the key's owner receives it); an unknown key
        or a malformed verdict is dead-lettered.
        """
        started = time.perf_counter()
        result = BatchResult()
        now = self.clock()
        for rec in records:
            try:
                feedback = decode_feedback(rec.value, rec.key, self.limits)
            except DecodeError as exc:
                self._reject(result, rec, exc.reason, str(exc), now)
                continue
            model: DeviceModel | LogSourceModel | None = None
            if self.devices.get(feedback.key) or self.device_store.get(feedback.key):
                model = self._device(feedback.key)
                self._dirty_devices.add(feedback.key)
            elif self.log_sources.get(feedback.key) or self.log_store.get(feedback.key):
                model = self._log_source(feedback.key)
                self._dirty_logs.add(feedback.key)
            if model is None:
                self._reject(result, rec, "unknown_key", f"no state for key {feedback.key!r}", now)
                continue
            if self._is_replay(model.offsets, model.loaded_offsets, rec):
                # already in the key's state (read again after a restart or a seek
                # back): applied twice, a verdict would halve the rates twice
                metrics.REPLAYED.inc()
                continue
            scale = model.feedback.apply(feedback.verdict, self.settings.feedback_min_scale)
            metrics.FEEDBACK.labels(verdict=feedback.verdict).inc()
            log.info(
                "feedback %s on %r (incident %s, by %s): alert rates now x%g",
                feedback.verdict,
                feedback.key,
                feedback.incident_id,
                feedback.by,
                scale,
            )
            self._accept(result, rec, 0)
        self._observe_batch(started, now, 0.0, result)
        return result

    def flush(self) -> int:
        """Write the state of every key changed since the last flush to the stores
        (a flush under way included); returns how many keys it wrote."""
        self.begin_flush()
        return self.flush_some()[0]

    def begin_flush(self) -> int:
        """Start a flush of the keys changed so far, written by :meth:`flush_some`;
        returns how many it has to write. A key changed after this is dirty again, for
        the next flush: what a flush writes of a key is at least what it was here.

        Sliced, a flush does not stop a worker for the whole of it (each key's snapshot
        costs ~100 µs): the kafka engine writes a slice per batch, and commits the
        offsets consumed before :meth:`begin_flush` once all of it is acknowledged.
        """
        self._flushing_devices.update(dict.fromkeys(self._dirty_devices))
        self._flushing_logs.update(dict.fromkeys(self._dirty_logs))
        self._dirty_devices.clear()
        self._dirty_logs.clear()
        return len(self._flushing_devices) + len(self._flushing_logs)

    def flush_some(self, until: float | None = None) -> tuple[int, int]:
        """Write keys of the flush under way until ``time.perf_counter()`` reaches
        ``until`` (at least one; ``None``: all); returns (written, left)."""
        written = 0
        while self._flushing_devices:
            if until is not None and written and time.perf_counter() >= until:
                break
            device, _ = self._flushing_devices.popitem()
            model = self.devices.get(device)
            if model is None:
                continue  # forgotten meanwhile (a revoked partition's, flushed before)
            raw = orjson.dumps(model.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY)
            self.device_store[device] = raw
            if self._better_prior(device, model):
                self._priors[self._profile(device).group] = (model.n_rows, device, raw)
            written += 1
        while self._flushing_logs and not self._flushing_devices:
            if until is not None and written and time.perf_counter() >= until:
                break
            key, _ = self._flushing_logs.popitem()
            source = self.log_sources.get(key)
            if source is not None:
                self.log_store[key] = orjson.dumps(source.snapshot())
                written += 1
        return written, len(self._flushing_devices) + len(self._flushing_logs)

    def output_partition(self, anomaly: AnomalyEvent) -> int | None:
        """The input partition of the key an anomaly is about (``None`` if unknown)."""
        for key in (anomaly.device, anomaly.key):
            if key is not None and key in self.partition_of:
                return self.partition_of[key]
        return None

    def forget(self, keys: Iterable[str] | None = None) -> None:
        """Drop hot state (all, or some keys), e.g. when partitions are revoked.

        Call :meth:`flush` first: what was not flushed is lost from memory and will be
        rebuilt from the store, which is the point after a rebalance.
        """
        if keys is None:
            self.devices.clear()
            self.log_sources.clear()
            # Every key reloads with the offsets it was flushed with, which cover what
            # this process processed.
            self._processed.clear()
            return
        for key in keys:
            self.devices.pop(key, None)
            self.log_sources.pop(key, None)

    # -- sensors ---------------------------------------------------------------------
    def _profile(self, device: str) -> DeviceProfile:
        profile = self._profile_cache.get(device)
        if profile is None:
            profile = next(
                (p for pattern, p in self._profiles if fnmatch.fnmatchcase(device, pattern)),
                self._default_profile,
            )
            self._profile_cache[device] = profile
        return profile

    def _new_device(self, device: str, profile: DeviceProfile) -> DeviceModel:
        return DeviceModel(
            device, profile.detector_spec, self.settings.max_sensors_per_device, profile.causality
        )

    def _device(self, device: str) -> DeviceModel:
        model = self.devices.get(device)
        if model is not None:
            return model
        profile = self._profile(device)
        raw = self.device_store.get(device)
        if raw is not None:
            try:
                model = DeviceModel.restore(
                    orjson.loads(raw),
                    profile.detector_spec,
                    self.settings.max_sensors_per_device,
                    profile.causality,
                )
                metrics.STATE_RESTORES.labels(outcome="ok").inc()
            except (StateError, orjson.JSONDecodeError, ValueError) as exc:
                # A state we cannot read is counted and replaced, never executed.
                log.warning("state of device %r unreadable, starting afresh: %s", device, exc)
                metrics.STATE_RESTORES.labels(outcome="corrupt").inc()
                model = None
        if model is None and profile.cohort_prior and self._prior_of(profile.group):
            model = DeviceModel.restore(
                orjson.loads(self._priors[profile.group][2]),
                profile.detector_spec,
                self.settings.max_sensors_per_device,
                profile.causality,
            )
            model.adopt(device, self.settings.warmup, self.settings.cohort_warmup)
            metrics.COHORT_PRIORS.labels(group=profile.group).inc()
        if model is None:
            model = self._new_device(device, profile)
        model.loaded_offsets = dict(model.offsets)
        self.devices[device] = model
        return model

    def _better_prior(self, device: str, model: DeviceModel) -> bool:
        """Whether ``device`` would be its group's prior: the most experienced device of
        the group (ties: by name), so the choice does not depend on the order of flushes."""
        profile = self._profile(device)
        if not profile.cohort_prior or model.n_rows < 2 * self.settings.warmup:
            return False
        best = self._priors.get(profile.group)
        return best is None or (model.n_rows, device) >= (best[0], best[1])

    def _prior_of(self, group: str) -> bool:
        """Bring the group's prior up to date with state not flushed yet; whether it has one.

        A device that joins between two flushes (the faust worker flushes at its offset
        commits) still starts from the most experienced peer in memory.
        """
        fresher = [
            (model.n_rows, device, model)
            for device in (*self._dirty_devices, *self._flushing_devices)
            if (model := self.devices.get(device)) is not None
            and self._profile(device).group == group
            and self._better_prior(device, model)
        ]
        if fresher:
            n_rows, device, model = max(fresher, key=lambda c: (c[0], c[1]))
            raw = orjson.dumps(model.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY)
            self._priors[group] = (n_rows, device, raw)
        return group in self._priors

    def _claim_channels(self, readings: list[SensorReading]) -> None:
        """Give new sensors a channel, or refuse the message past the sensor limit."""
        model = self.devices.get(readings[0].device) or self._device(readings[0].device)
        index = model.index
        if len(readings) == 1:
            if readings[0].sensor in index:
                return  # the common case: a known sensor
        elif all(r.sensor in index for r in readings):
            return
        new = {r.sensor for r in readings} - index.keys()
        if len(model.sensors) + len(new) > self.settings.max_sensors_per_device:
            raise DecodeError(
                "too_many_sensors",
                f"device {model.device!r} would exceed {self.settings.max_sensors_per_device} sensors",
            )
        for r in readings:
            model.channel(r.sensor)

    def _device_failed(
        self,
        device: str,
        items: list[tuple[Record, list[SensorReading]]],
        exc: Exception,
        now: float,
        result: BatchResult,
    ) -> None:
        log.exception("processing failed for device %r; its state is reset", device)
        # A state that made the code fail once would fail every batch: start the key
        # afresh instead of dead-lettering it forever.
        self.devices[device] = self._new_device(device, self._profile(device))
        self._dirty_devices.add(device)
        for rec, _ in items:
            self._reject(result, rec, "processing_error", repr(exc), now)

    def _score_stacked(
        self, fresh: dict[str, list[tuple[Record, list[SensorReading]]]]
    ) -> dict[str, ReadingRows]:
        """Prequential scores of the univariate devices of a batch, stacked across devices.

        Devices whose detectors share type and parameters run as one detector
        (:mod:`detectors.stacking`), their state kept stacked between batches in that
        kind's :class:`~detectors.stack_pool.StackPool`: a batch bringing each of 1,000
        devices one tick costs one detector call per tick, not 1,000. A new device's detector starts at
        its first row, so that row runs on its own and the rest with the others (a
        first batch of many ticks per device is stacked too). Devices left out (a
        protect guard, a detector that cannot stack, a new device with one row, too few
        devices alike) are scored one by one in :meth:`_score_readings`. Only stackable
        devices are passed on, so a failure leaves every device's state as it was (the
        stack is a copy until it is scattered back), and each then runs on its own.
        """
        if self._guard is not None:
            return {}
        groups: dict[str, list[tuple[str, DeviceModel, ReadingRows, np.ndarray | None]]] = {}
        out: dict[str, ReadingRows] = {}
        for device, items in fresh.items():
            model = self.devices.get(device)
            if not items or model is None or not isinstance(model.detector, UnivariateDetector):
                continue
            ready = can_stack(model.detector, len(model.sensors))
            if not ready and not stackable(model.detector):
                continue  # a detector that cannot stack: on its own
            rows = tick_matrix(model.index, _readings(items))
            head = None
            if not ready:
                if len(rows.matrix) < 2:
                    continue  # a new device with one row: on its own
                try:
                    head = model.score_learn(rows.matrix[:1], surprise=self._by_surprise)
                except Exception:  # unchanged but for this row: the device path decides
                    log.exception("first row of device %r failed", device)
                    continue
                if not can_stack(model.detector, len(model.sensors)):
                    if (alone := self._rest_alone(model, rows, head)) is not None:
                        out[device] = alone
                    continue
            groups.setdefault(model.stack_key, []).append((device, model, rows, head))
        for key, members in groups.items():
            judged = None
            if len(members) >= MIN_KEYS:
                try:
                    pool = self._stack_pools.get(key)
                    if pool is None:
                        pool = self._stack_pools[key] = StackPool()
                    judged = pool.prequential(
                        [as_univariate(model.detector, "stacking") for _, model, _, _ in members],
                        [_rest(rows, head) for _, _, rows, head in members],
                        surprise=self._by_surprise,
                    )
                except Exception:  # state untouched: each device runs on its own instead
                    log.exception(
                        "stacked scoring failed; scoring %d devices one by one", len(members)
                    )
            for i, (device, model, rows, head) in enumerate(members):
                if judged is None:  # too few alike, or the stack failed
                    if head is not None and (alone := self._rest_alone(model, rows, head)):
                        out[device] = alone  # started here: its other rows on its own, now
                    continue
                model.n_rows += len(_rest(rows, head))
                rows.judged = judged[i] if head is None else np.vstack([head, judged[i]])
                out[device] = rows
        return out

    def _check_causality_stacked(
        self, fresh: dict[str, list[tuple[Record, list[SensorReading]]]]
    ) -> tuple[dict[str, CheckedRows], dict[str, Exception]]:
        """Assemble the rows of the batch's joint devices and run their Granger checks
        stacked across devices (:mod:`detectors.causality.stacked`: one numpy call per
        step for all devices alike, not one per device).

        Returns, per device, its closed rows and their findings (``None`` for a device
        without Granger checks), and the devices whose checks failed. The stack writes
        into each monitor's state as it goes, so a failure cannot be undone: every
        device of it fails as a device of the per-device path does (its state reset,
        its inputs dead-lettered).
        """
        out: dict[str, CheckedRows] = {}
        failed: dict[str, Exception] = {}
        stack: list[tuple[str, GrangerMonitor, np.ndarray]] = []
        for device, items in fresh.items():
            model = self.devices.get(device)
            if not items or model is None or not model.joint:
                continue
            try:
                closed = model.assemble(_pushed(model, items))
                monitor = model.granger_monitor() if closed else None
            except Exception as exc:  # a bug must not kill the worker or lose the input
                failed[device] = exc
                continue
            out[device] = checked = CheckedRows(closed)
            if monitor is not None:
                stack.append((device, monitor, checked.rows()))
        if not stack:
            return out, failed
        try:
            found = update_stacked([m for _, m, _ in stack], [rows for _, _, rows in stack])
        except Exception as exc:
            log.exception("stacked Granger checks failed for %d devices", len(stack))
            failed.update((device, exc) for device, _, _ in stack)
            return out, failed
        for (device, _, _), findings in zip(stack, found, strict=True):
            out[device].findings = findings
        return out, failed

    def _rest_alone(
        self, model: DeviceModel, rows: ReadingRows, head: np.ndarray
    ) -> ReadingRows | None:
        """Score a device's rows after its first (``head``, already judged) on its own;
        ``None`` if that fails (the device's own path then scores it, and resets it if
        that fails too)."""
        try:
            rest = model.score_learn(rows.matrix[1:], surprise=self._by_surprise)
        except Exception:
            log.exception("scoring device %r failed", model.device)
            return None
        rows.judged = np.vstack([head, rest])
        return rows

    def _score_device(
        self,
        device: str,
        items: list[tuple[Record, list[SensorReading]]],
        now: float,
        result: BatchResult,
        stacked: ReadingRows | None = None,
        checked: CheckedRows | None = None,
    ) -> float:
        """Score a device's fresh readings of this batch; returns the newest event time.

        ``stacked`` and ``checked``: what the batch's stacked steps already did for it."""
        model = self._device(device)
        profile = self._profile(device)
        if items:
            self.partition_of[device] = items[-1][0].partition
        if not items:
            return 0.0
        self._dirty_devices.add(device)
        newest = max(r.ts for _, readings in items for r in readings)
        if not model.multivariate:
            self._score_readings(model, profile, items, now, result, stacked)
        if model.joint:
            self._score_rows(model, profile, items, now, result, checked)
        for _, readings in items:
            for r in readings:
                model.last_values[model.index[r.sensor]] = r.value
        if profile.export_edges and model.granger is not None and model.granger.warmed_up:
            self._export_edges(profile, model)
        quiet = model.incidents.on_quiet(device, newest, self.settings.incident_idle_s, now)
        if quiet is not None:
            result.incidents.append(quiet)
        return newest

    def _score_rows(
        self,
        model: DeviceModel,
        profile: DeviceProfile,
        items: list[tuple[Record, list[SensorReading]]],
        now: float,
        result: BatchResult,
        checked: CheckedRows | None = None,
    ) -> None:
        """The Granger checks and a multivariate detector, on the device's full rows.

        Rows are assembled in the key's state (:mod:`stream.rows`), so these see the
        same rows however the input was batched. ``checked``: the rows already
        assembled, and their findings if the checks ran stacked.
        """
        if checked is None:
            checked = CheckedRows(model.assemble(_pushed(model, items)))
        closed = checked.closed
        if not closed:
            return
        row_ts = [ts for ts, _, _ in closed]
        findings = checked.findings
        if findings is None:
            findings = model.check_causality(checked.rows())
        if model.multivariate:
            matrix = checked.rows()
            judged = model.score_learn(matrix, self._guard, surprise=self._by_surprise)
            scores = surprise_to_score(judged) if self._by_surprise else judged
            self._decide_rows(model, profile, matrix, row_ts, scores, judged, now, result)
            for (ts, row, seen), score in zip(closed, scores.tolist(), strict=True):
                for c in np.flatnonzero(seen).tolist():
                    if self.score_sink is not None:
                        self.score_sink(model.device, model.sensors[c], ts, row[c], score)
                    model.remember(c, ts, score)
        for i, finding in findings:
            anomaly = self._causality_anomaly(model, profile, finding, row_ts[i], now)
            result.anomalies.append(anomaly)
            self._incident_anomaly(
                model.incidents, model.device, anomaly, anomaly.key, now, result, one_shot=True
            )

    def _score_readings(
        self,
        model: DeviceModel,
        profile: DeviceProfile,
        items: list[tuple[Record, list[SensorReading]]],
        now: float,
        result: BatchResult,
        stacked: ReadingRows | None = None,
    ) -> None:
        """A univariate detector: each sensor's readings in order, decided one by one.

        The batch becomes a matrix with one row per tick and NaN where a sensor was
        silent (the detector skips those), so each sensor sees its own sequence
        whichever way the input was batched. ``stacked`` holds the matrix already
        judged with other devices' (:meth:`_score_stacked`).
        """
        device = model.device
        d = len(model.sensors)
        rows = stacked or tick_matrix(model.index, _readings(items))
        judged = rows.judged
        if judged is None:
            judged = model.score_learn(rows.matrix, self._guard, surprise=self._by_surprise)
        surprises = judged.tolist()
        by_surprise = self._by_surprise
        fixed_warning = self._fixed_thresholds(model.feedback.scale).warning
        expected = None
        # Most readings are quiet (see _counted_if_quiet), and a quiet reading changes
        # nothing that decides whether the next one is: so a channel's bar, read once
        # (and again after each reading taken in full), decides a run of them with one
        # comparison each. Their counts wait in ``pending`` and are applied before the
        # channel's next full step (and at the end), as one by one they would have been.
        bars: list[float | None] = [None] * d  # None: read it before the next reading
        pending = [0] * d
        for i, c, r in rows.placed:
            surprise = surprises[i][c]
            score = surprise_to_score_one(surprise) if by_surprise else surprise
            if self.score_sink is not None:
                self.score_sink(device, r.sensor, r.ts, r.value, score)
            model.remember(c, r.ts, score)
            bar = bars[c]
            if bar is None:
                bar = bars[c] = self._quiet_bar(model, c)
            if surprise < bar:
                pending[c] += 1
                continue
            if pending[c]:
                self._count_quiet(model, c, pending[c])
                pending[c] = 0
            bars[c] = None  # this reading may move the channel's levels or episode
            episodes = model.episodes[c]
            # Over a bar, _counted_if_quiet would say "not quiet" too: it is asked only
            # where the bar could not be read (calibrating, "rate", an open episode, ...)
            if bar == -math.inf and self._counted_if_quiet(
                model, c, score, surprise, episodes, fixed_warning
            ):
                continue
            key = f"{device}/{r.sensor}"
            value, judge, thresholds = self._judge(model, c, score, surprise, episodes)
            decision = episodes.step(
                value, r.ts, judge, self.settings.warmup, self.settings.cooldown, key
            )
            if decision is None:
                continue
            self._track_open(decision)
            if decision.action == "close":
                self._incident_closed(model.incidents, device, key, r.ts, now, result)
                continue
            if expected is None:
                expected = model.expected() or (np.full(d, np.nan), np.full(d, np.nan))
            anomaly = self._sensor_anomaly(
                profile,
                r,
                key,
                score,
                decision,
                thresholds,
                expected[0][c],
                expected[1][c],
                now,
                # judged on its surprise against the key's own (SPOT) level
                None if judge is thresholds else (value, getattr(judge, decision.severity)),
            )
            result.anomalies.append(anomaly)
            self._incident_anomaly(model.incidents, device, anomaly, key, now, result)
        for c, n in enumerate(pending):
            if n:
                self._count_quiet(model, c, n)

    def _quiet_bar(self, model: DeviceModel, channel: int) -> float:
        """The surprise under which the channel's next readings are quiet until one is
        not (``-inf``: judge each by :meth:`_counted_if_quiet`).

        Its conditions, none of which a quiet reading changes: the channel's episode
        is closed, its SPOT calibrated, and its cached levels hold (they move only
        with a peak, an episode or feedback)."""
        if self._policy == "rate":
            return -math.inf
        spot = model.spots.get(channel)
        cached = model.spot_levels.get(channel)
        if spot is None or cached is None or not spot.calibrated:
            return -math.inf
        episodes = model.episodes[channel]
        if episodes.open_since is not None:
            return -math.inf
        if not cached.hold(spot, model.feedback.scale / episodes.extremal_index):
            return -math.inf
        return cached.quiet

    @staticmethod
    def _count_quiet(model: DeviceModel, channel: int, n: int) -> None:
        """Count ``n`` quiet readings of a calibrated channel, as :meth:`_counted_if_quiet`
        counts each."""
        model.spots[channel].step_quiet(n)
        model.episodes[channel].n_seen += n

    @property
    def _by_surprise(self) -> bool:
        """Whether keys are judged on surprises (per-key SPOT) rather than scores."""
        return self.settings.thresholds != "rate"

    def _judge(
        self, model: DeviceModel, channel: int, score: float, surprise: float, episodes: Episodes
    ) -> tuple[float, Thresholds, Thresholds]:
        """What a key's episodes compare, the thresholds they compare it with, and those
        thresholds as scores (for the event).

        ``thresholds: rate`` judges the score by the fixed ``1 - rate`` thresholds;
        ``auto`` (the default) does so until the key's SPOT is calibrated, then as ``spot``.
        ``thresholds: spot`` judges the surprise ``-log10(tail)``: each sensor (or, for
        a multivariate detector, each device) fits SPOT (Siffer et al., KDD 2017) to the
        upper tail of its own surprises; the warning level is the one exceeded with
        probability ``warning_rate``, the critical level the one for ``critical_rate``.
        A key whose residuals are heavier-tailed than the detector's model, or whose
        "extreme" values are routine (a square wave's edges), gets higher levels.
        Surprises are not capped, so that is learnable even past the point where scores
        round to 1. The target rates are of *alerts*: exceedances that come in clusters
        (a step's edge and the forecaster's overshoot after it) open one episode, so the
        levels are set at ``rate / theta``, with ``theta`` the key's extremal index
        (:attr:`stream.decide.Episodes.extremal_index`). Until SPOT has its
        ``spot_init`` calibration values, nothing alarms.
        """
        scale = model.feedback.scale  # below 1 after false-positive verdicts
        policy = self._policy
        if policy != "rate":
            spot = model.spots.get(channel)
            if spot is None:
                spot = SPOT(
                    q=self.settings.warning_rate,
                    n_init=self.settings.spot_init,
                    init_quantile=self.settings.spot_quantile,
                    max_peaks=self.settings.spot_max_peaks,
                    refit_every=spot_refit_every(self.settings.spot_max_peaks),
                    empirical_peaks=10,
                    min_gamma=0.0,  # surprises: no lighter tail than the model's own
                )
                model.spots[channel] = spot
            record = surprise > spot.calibration_max()  # False once calibrated (nan)
            spot.step(surprise)
            if spot.calibrated:
                levels = self._spot_levels(model, channel, spot, scale / episodes.extremal_index)
                return surprise, levels.judge, levels.shown
            if policy == "spot":
                return surprise, _NEVER, _NEVER
            scored = max(episodes.n_seen - self.settings.warmup, 0)
            flooding = episodes.opened > 3 + 3 * self.settings.warning_rate * scale * scored
            if flooding and not record and episodes.open_since is None:
                # auto, calibrating, and this key has opened far more episodes than its
                # target allows (the detector's model is wrong about what is routine
                # here, e.g. a square wave's edges): a new episode also needs a record,
                # a surprise above all the key has shown (under exchangeable data a
                # record at the n-th score has probability 1/n). An open episode
                # continues on the fixed thresholds.
                return score, _NEVER, _NEVER
        # "rate", and "auto" while the key's SPOT calibrates: the detector's own tails
        fixed = self._fixed_thresholds(scale)
        return score, fixed, fixed

    def _fixed_thresholds(self, scale: float) -> Thresholds:
        """The score thresholds of the target rates times ``scale`` (feedback)."""
        if scale == 1.0:
            return self.thresholds
        return Thresholds.from_rates(
            self.settings.warning_rate * scale, self.settings.critical_rate * scale
        )

    def _counted_if_quiet(
        self,
        model: DeviceModel,
        channel: int,
        score: float,
        surprise: float,
        episodes: Episodes,
        fixed_warning: float,
    ) -> bool:
        """Whether a reading is quiet, and if so count it where :meth:`_judge` and its
        episodes would: most readings are, and for them that is all those do.

        Quiet: the key's episode is closed, and the reading can neither open one nor
        move the key's levels. That is, a surprise under the key's SPOT levels that
        still hold (:attr:`stream.decide.SpotLevels.quiet`: no peak, no alarm, no
        severity); or, while SPOT calibrates (not on the value that completes it), a
        score under the fixed warning threshold (``fixed_warning``); or, under
        ``thresholds: rate``, a score under it. Anything else takes the full path.
        """
        if episodes.open_since is not None:
            return False
        if self._policy == "rate":
            quiet = score < fixed_warning
        else:
            spot = model.spots.get(channel)
            if spot is None:
                return False  # the full path makes it
            if spot.calibrated:  # under the channel's bar (the levels that still hold)
                if not surprise < self._quiet_bar(model, channel):
                    return False
                self._count_quiet(model, channel, 1)
                return True
            # calibrating: "spot" never alarms, "auto" judges the score by the fixed
            # thresholds (or not at all when flooding): either way no severity
            quiet = spot.calibration_left() > 1 and (
                self._policy == "spot" or score < fixed_warning
            )
            if quiet:
                spot.step(surprise)
        if quiet:
            episodes.n_seen += 1
        return quiet

    def _spot_levels(
        self, model: DeviceModel, channel: int, spot: SPOT, scale: float
    ) -> SpotLevels:
        """A calibrated key's levels at the alert-rate ``scale``, cached in its model
        and computed again only when they move (:meth:`SpotLevels.key_of`)."""
        cached = model.spot_levels.get(channel)
        if cached is not None and cached.hold(spot, scale):
            return cached
        warning = spot.threshold if scale == 1.0 else spot.level(self.settings.warning_rate * scale)
        critical = max(spot.level(self.settings.critical_rate * scale), warning)
        cached = SpotLevels(
            spot,
            SpotLevels.key_of(spot, scale),
            Thresholds(warning, critical),
            # in plain floats: this runs at every peak (numpy per scalar costs ~10x)
            Thresholds(surprise_to_score_one(warning), surprise_to_score_one(critical)),
            min(spot.quiet_level(), warning),
        )
        model.spot_levels[channel] = cached
        return cached

    def _unseen(
        self, model: DeviceModel, items: list[tuple[Record, list[SensorReading]]]
    ) -> list[tuple[Record, list[SensorReading]]]:
        """Drop inputs this key's state already learned (replayed after a restart).

        Outputs are published before state is stored, and offsets committed after
        both, so a restart replays inputs whose effect on the state is already in the
        changelog; learning them twice would shift the models and repeat alarms.
        """
        fresh = []
        for rec, readings in items:
            if self._is_replay(model.offsets, model.loaded_offsets, rec):
                metrics.REPLAYED.inc()
                continue
            fresh.append((rec, readings))
        return fresh

    def _is_replay(self, offsets: dict[str, int], loaded: dict[str, int], rec: Record) -> bool:
        """Whether ``rec`` is already in its key's state; if not, note it as processed.

        An input at or below the key's last offset was learned, by an earlier owner (at
        or below the offset the state was loaded with) or by this process (its offset is
        remembered), unless this process never saw it: faust sometimes never delivers
        the first input after a seek, and its commit repair reads it again once later
        inputs of the same key have moved the key's offset past it. Such an input is
        processed now, out of order, rather than lost.
        """
        where = f"{rec.topic}:{rec.partition}"
        last = offsets.get(where, -1)
        processed = self._processed.get(where)
        if processed is None:
            processed = self._processed[where] = ProcessedOffsets()
        if rec.offset <= last:
            if rec.offset <= loaded.get(where, -1) or rec.offset in processed:
                return True
            log.warning(
                "input %s offset %d was read again but never processed here (the key is at "
                "%d; its state was loaded at %s): processing it now, out of order",
                where,
                rec.offset,
                last,
                loaded.get(where),
            )
        else:
            offsets[where] = rec.offset
        processed.add(rec.offset)
        return False

    def _decide_rows(
        self,
        model: DeviceModel,
        profile: DeviceProfile,
        matrix: np.ndarray,
        row_ts: list[float],
        scores: np.ndarray,
        judged: np.ndarray,
        now: float,
        result: BatchResult,
    ) -> None:
        """Episodes of a multivariate detector: one score per tick, for the device."""
        for i, ts in enumerate(row_ts):
            score = float(scores[i])
            value, judge, thresholds = self._judge(
                model, -1, score, float(judged[i]), model.device_episodes
            )
            decision = model.device_episodes.step(
                value,
                ts,
                judge,
                self.settings.warmup,
                self.settings.cooldown,
                model.device,
            )
            if decision is None:
                continue
            self._track_open(decision)
            if decision.action == "close":
                self._incident_closed(model.incidents, model.device, model.device, ts, now, result)
                continue
            row = matrix[i]
            actual = {
                s: float(v) for s, v in zip(model.sensors, row, strict=True) if np.isfinite(v)
            }
            attribution = model.explain(row)
            top = max(attribution, key=attribution.__getitem__) if attribution else None
            metrics.ANOMALIES.labels(
                kind="sensor", detector=profile.detector_spec["name"], severity=decision.severity
            ).inc()
            anomaly = AnomalyEvent(
                id=event_id(model.device, profile.model_version, ts, decision.action),
                kind="sensor",
                key=model.device,
                detector=profile.detector_spec["name"],
                event_ts=ts,
                detected_ts=now,
                score=score,
                threshold=getattr(thresholds, decision.severity),
                severity=decision.severity,  # type: ignore[arg-type]
                model_version=profile.model_version,
                device=model.device,
                sensor=top,
                actual=actual,
                attribution=attribution,
                episode_id=decision.episode_id,
                reason=f"joint score {score:.6f} of {len(actual)} sensors"
                + (f", mostly {top}" if top else ""),
                details={"action": decision.action, "group": profile.group},
            )
            result.anomalies.append(anomaly)
            self._incident_anomaly(
                model.incidents, model.device, anomaly, model.device, now, result
            )

    def _sensor_anomaly(
        self,
        profile: DeviceProfile,
        r: SensorReading,
        key: str,
        score: float,
        decision: Decision,
        thresholds: Thresholds,
        expected: float,
        scale: float,
        now: float,
        surprise: tuple[float, float] | None = None,
    ) -> AnomalyEvent:
        details: dict[str, Any] = {"action": decision.action, "group": profile.group}
        if np.isfinite(scale):
            details["expected_scale"] = float(scale)
        reason = f"{r.sensor} scored {score:.6f} (>= {decision.severity} threshold)"
        if surprise is not None:
            # scores round to 1 past a tail of ~1e-16; the surprise -log10 p does not
            details["surprise"] = float(surprise[0])
            details["surprise_threshold"] = float(surprise[1])
            reason = (
                f"{r.sensor}: surprise {surprise[0]:.3g} (p = 1e-{surprise[0]:.3g}) >= this "
                f"key's {decision.severity} level {surprise[1]:.3g}"
            )
        name = profile.detector_spec["name"]
        metrics.ANOMALIES.labels(kind="sensor", detector=name, severity=decision.severity).inc()
        return AnomalyEvent(
            id=event_id(key, profile.model_version, r.ts, decision.action),
            kind="sensor",
            key=key,
            detector=name,
            event_ts=r.ts,
            detected_ts=now,
            score=score,
            threshold=getattr(thresholds, decision.severity),
            severity=decision.severity,  # type: ignore[arg-type]
            model_version=profile.model_version,
            device=r.device,
            sensor=r.sensor,
            actual={r.sensor: r.value},
            expected={r.sensor: float(expected)} if np.isfinite(expected) else None,
            attribution={r.sensor: 1.0},
            episode_id=decision.episode_id,
            reason=reason,
            details=details,
        )

    def _causality_anomaly(
        self,
        model: DeviceModel,
        profile: DeviceProfile,
        f: CausalityFinding,
        ts: float,
        now: float,
    ) -> AnomalyEvent:
        severity = self.thresholds.severity(f.score) or "warning"
        metrics.CAUSALITY_FINDINGS.labels(check=f.kind).inc()
        metrics.ANOMALIES.labels(
            kind="causality", detector="granger_monitor", severity=severity
        ).inc()
        edge = f"{f.cause}->{f.effect}" if f.kind != "residual" else f.effect
        reasons = {
            "decoupling": f"{f.effect} stopped following {f.cause}",
            "new_link": f"{f.effect} started following {f.cause}",
            "residual": f"{f.effect} departs from what its causes ({f.cause or 'none'}) predict",
        }
        return AnomalyEvent(
            id=event_id(model.device, "granger", f.kind, edge, ts),
            kind="causality",
            key=f"{model.device}/{edge}",
            detector="granger_monitor",
            event_ts=ts,
            detected_ts=now,
            score=f.score,
            threshold=self._threshold_of(severity),
            severity=severity,  # type: ignore[arg-type]
            model_version="granger_monitor:1",
            device=model.device,
            sensor=f.effect,
            attribution={f.effect: 1.0},
            reason=reasons.get(f.kind, f.kind),
            details={
                "check": f.kind,
                "cause": f.cause,
                "effect": f.effect,
                "strength_before": f.strength_before,
                "strength_now": f.strength_now,
                "p_before": f.p_before,
                "p_now": f.p_now,
                "group": profile.group,
            },
        )

    def _export_edges(self, profile: DeviceProfile, model: DeviceModel) -> None:
        """The group's causal graph as gauges: an average over its devices, top edges only."""
        assert model.granger is not None
        edges = self._edge_avg.setdefault(profile.group, {})
        for e in model.granger.baseline_graph():
            key = (e["cause"], e["effect"])
            prev = edges.get(key)
            # Exponential average over the group's devices as they report.
            edges[key] = e["strength"] if prev is None else 0.98 * prev + 0.02 * e["strength"]
        top = sorted(edges.items(), key=lambda kv: -kv[1])[: profile.top_edges]
        for (cause, effect), value in top:
            metrics.CAUSAL_EDGE.labels(group=profile.group, cause=cause, effect=effect).set(value)

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
            model = LogSourceModel(
                key,
                self.settings.max_log_templates,
                self.settings.log_rate_bucket_s,
                self.settings.log_rate_templates,
            )
        model.loaded_offsets = dict(model.offsets)
        self.log_sources[key] = model
        return model

    def _score_log(self, event: LogEvent, key: str, now: float, result: BatchResult) -> None:
        model = self._log_source(key)
        model.n_seen += 1
        self._dirty_logs.add(key)
        mined = model.miner.add(event.message)
        record = (event.source, mined.template_id)
        surprise = -math.log(max(model.rare.probability(*record), 1e-12))
        template = str(mined.template_id)
        order_surprise = model.sequence.surprise("", template)
        found = [
            ("rare_template", model.rare.score_one(record), ""),
            ("template_surprise", model.surprise_score(surprise), ""),
            ("sequence", model.surprise_score(order_surprise, model.sequence_chart), ""),
        ]
        model.rare.learn_one(record)
        model.sequence.learn_one(("", template))
        rate_rows = model.rates.add(template, event.ts)
        if template in model.rates.index:
            model.last_lines[template] = event.message[:1000]
        if event.action is not None:
            found += [(f"auth_{f.kind}", f.score, f.reason) for f in model.auth.check(event)]
            model.auth.learn_one(event)
        if model.n_seen <= self.settings.warmup:
            return
        thresholds = self.log_thresholds
        if model.feedback.scale != 1.0:
            thresholds = Thresholds.from_rates(
                self.settings.log_warning_rate * model.feedback.scale,
                self.settings.log_critical_rate * model.feedback.scale,
            )
        for detector, score, why in found:
            episodes = model.episodes.setdefault(detector, Episodes())
            decision = episodes.step(
                score, event.ts, thresholds, 0, self.settings.cooldown, f"{key}/{detector}"
            )
            if decision is None:
                continue
            if decision.action == "close":
                self._track_open(decision)
                self._incident_closed(
                    model.incidents, key, f"{key}/{detector}", event.ts, now, result
                )
                continue
            self._track_open(decision)
            if detector == "template_surprise":
                why = (
                    f"a run of unusual templates for {key!r} (latest surprise {surprise:.1f} nats)"
                )
            elif detector == "sequence":
                why = (
                    f"templates in an order unusual for {key!r} (latest transition "
                    f"surprise {order_surprise:.1f} nats)"
                )
            elif detector == "rare_template":
                p = model.rare.probability(event.source, mined.template_id)
                why = (
                    f"template {mined.template_id} {'never seen' if mined.is_new else 'rare'} "
                    f"for {key!r} on {event.source!r} (probability {p:.2g})"
                )
            anomaly = AnomalyEvent(
                id=event_id(key, detector, event.ts, decision.action, event.message),
                kind="log",
                key=key,
                detector=detector,
                event_ts=event.ts,
                detected_ts=now,
                score=score,
                threshold=getattr(thresholds, decision.severity),
                severity=decision.severity,  # type: ignore[arg-type]
                model_version=f"{detector}:1",
                host=event.host or None,
                user=event.user or None,
                episode_id=decision.episode_id,
                reason=why,
                details={
                    "action": decision.action,
                    "template_id": mined.template_id,
                    "template": mined.template,
                    "lines": [event.message[:1000]],
                    "source": event.source,
                    "event_action": event.action,
                    "src_ip": event.src_ip,
                },
            )
            result.anomalies.append(anomaly)
            self._incident_anomaly(model.incidents, key, anomaly, f"{key}/{detector}", now, result)
            metrics.ANOMALIES.labels(
                kind="log", detector=detector, severity=decision.severity
            ).inc()
        for row in rate_rows:
            self._decide_rates(model, key, row, thresholds, now, result)

    def _decide_rates(
        self,
        model: LogSourceModel,
        key: str,
        row: RateRow,
        thresholds: Thresholds,
        now: float,
        result: BatchResult,
    ) -> None:
        """Episodes of each tracked template's rate in one closed bucket."""
        for j, template in enumerate(row.templates):
            score = float(row.scores[j])
            episodes = model.episodes.get(f"rate/{template}")
            if score < thresholds.warning and (episodes is None or episodes.open_since is None):
                continue  # nothing to open or to close: skip the bookkeeping
            if episodes is None:
                episodes = model.episodes[f"rate/{template}"] = Episodes()
            stream = f"{key}/rate/{template}"
            decision = episodes.step(
                score, row.end_ts, thresholds, 0, self.settings.cooldown, stream
            )
            if decision is None:
                continue
            self._track_open(decision)
            if decision.action == "close":
                self._incident_closed(model.incidents, key, stream, row.end_ts, now, result)
                continue
            text = model.miner.templates().get(template, template)
            count, expected = float(row.counts[j]), float(row.expected[j])
            anomaly = AnomalyEvent(
                id=event_id(key, "template_rate", template, row.end_ts, decision.action),
                kind="log",
                key=key,
                detector="template_rate",
                event_ts=row.end_ts,
                detected_ts=now,
                score=score,
                threshold=getattr(thresholds, decision.severity),
                severity=decision.severity,  # type: ignore[arg-type]
                model_version="template_rate:1",
                actual={"count": count},
                expected={"count": expected},
                episode_id=decision.episode_id,
                reason=f"template {template} seen {count:.0f} times in "
                f"{model.rates.bucket_s:.0f} s for {key!r}, expected about {expected:.1f}",
                details={
                    "action": decision.action,
                    "template_id": template,
                    "template": text,
                    "lines": [model.last_lines.get(template, text)],
                    "bucket_s": model.rates.bucket_s,
                },
            )
            result.anomalies.append(anomaly)
            self._incident_anomaly(model.incidents, key, anomaly, stream, now, result)
            metrics.ANOMALIES.labels(
                kind="log", detector="template_rate", severity=decision.severity
            ).inc()

    # -- incidents -------------------------------------------------------------------
    def _incident_anomaly(
        self,
        tracker: IncidentTracker,
        key: str,
        anomaly: AnomalyEvent,
        stream: str,
        now: float,
        result: BatchResult,
        one_shot: bool = False,
    ) -> None:
        event = tracker.on_anomaly(key, anomaly, stream, now, one_shot)
        if event is not None:
            result.incidents.append(event)
            metrics.INCIDENT_EVENTS.labels(action=event.action).inc()

    def _incident_closed(
        self,
        tracker: IncidentTracker,
        key: str,
        stream: str,
        ts: float,
        now: float,
        result: BatchResult,
    ) -> None:
        event = tracker.on_close(key, stream, ts, now)
        if event is not None:
            result.incidents.append(event)
            metrics.INCIDENT_EVENTS.labels(action=event.action).inc()

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
        by_topic = result.processed_by_topic
        by_topic[rec.topic] = by_topic.get(rec.topic, 0) + 1

    def forget_inputs(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Forget what was dead-lettered from these input partitions (no longer held).

        Not on every revocation: a partition kept through a rebalance is read again
        from its committed offset, and (with ``exactly_once``) its open transaction,
        which holds those dead letters, lives on.
        """
        for where in partitions:
            self._rejected.pop(where, None)
            self._processed.pop(f"{where[0]}:{where[1]}", None)

    def _reject(
        self, result: BatchResult, rec: Record, reason: str, error: str, now: float
    ) -> None:
        seen = self._rejected.setdefault((rec.topic, rec.partition), set())
        if rec.offset in seen:
            metrics.REPLAYED.inc()  # dead-lettered already, then read again
            self._accept(result, rec, 0)
            return
        if len(seen) >= REJECTED_MEMORY:  # re-reads start at the committed offset: keep the newest
            for old in sorted(seen)[: REJECTED_MEMORY // 2]:
                seen.discard(old)
        seen.add(rec.offset)
        result.dead_letters.append(
            dead_letter(
                rec.value, rec.key, reason, error, rec.topic, rec.partition, rec.offset, now
            )
        )
        metrics.EVENTS.labels(topic=rec.topic, outcome="dead_letter").inc()
        metrics.DEAD_LETTERS.labels(reason=reason).inc()

    def suppress(self, pattern: str, until: float, reason: str = "") -> Suppression:
        """Start a maintenance window (see :class:`Suppression`); returns it with its id."""
        sup = Suppression(event_id("suppression", pattern, until, reason), pattern, until, reason)
        self.suppressions[sup.id] = sup
        return sup

    def _apply_suppressions(self, result: BatchResult, now: float) -> None:
        active = [s for s in self.suppressions.values() if now < s.until]
        if len(active) != len(self.suppressions):
            self.suppressions = {s.id: s for s in active}
        if not active or not (result.anomalies or result.incidents):
            return
        kept = [a for a in result.anomalies if not any(s.covers(a, now) for s in active)]
        metrics.SUPPRESSED.inc(len(result.anomalies) - len(kept))
        result.anomalies = kept
        result.incidents = [
            i for i in result.incidents if not any(s.covers(i, now) for s in active)
        ]

    def _in_shadow(self, device: str | None, key: str) -> bool:
        name = device if device is not None else key
        if name in self.devices:
            return self._profile(name).shadow
        return self.settings.shadow

    def _divert_shadow(self, result: BatchResult) -> None:
        """Events of keys in shadow mode go to ``result.shadow``, marked, not to alerts."""
        if not (self.settings.shadow or any(p.shadow for _, p in self._profiles)):
            return
        anomalies: list[AnomalyEvent] = []
        for a in result.anomalies:
            if self._in_shadow(a.device, a.key):
                result.shadow.append(msgspec.structs.replace(a, shadow=True))
            else:
                anomalies.append(a)
        incidents: list[IncidentEvent] = []
        for i in result.incidents:
            if self._in_shadow(None, i.key):
                result.shadow.append(msgspec.structs.replace(i, shadow=True))
            else:
                incidents.append(i)
        result.anomalies, result.incidents = anomalies, incidents
        if result.shadow:
            metrics.SHADOW_EVENTS.inc(len(result.shadow))

    def _observe_batch(
        self, started: float, now: float, newest: float, result: BatchResult
    ) -> None:
        self._apply_suppressions(result, now)
        self._divert_shadow(result)
        for topic, n in result.processed_by_topic.items():
            metrics.EVENTS.labels(topic=topic, outcome="processed").inc(n)
        metrics.PROCESSING.observe(time.perf_counter() - started)
        if newest > 0:
            metrics.EVENT_LAG.observe(max(now - newest, 0.0))
        metrics.READINGS.inc(result.readings)
