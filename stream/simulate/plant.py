"""A seeded, deterministic simulation of a plant of pumps with known lagged couplings.

Each device runs the same linear physics in dimensionless *latent* units (about 1),
which a per-device offset and scale then map to engineering units, so devices differ in
level and spread the way real ones do::

    load_t        = 1 + A sin(2 pi t / day + phi) + u_t,   u_t = 0.95 u_{t-1} + 0.03 e
    current_t     = a load_t + noise
    flow_t        = 0.4 current_{t-1} + 0.6 flow_{t-1} + noise
    pressure_t    = 0.5 flow_{t-1} + 0.5 pressure_{t-1} + noise
    temperature_t = 0.97 temperature_{t-1} + 0.03 current_{t-1} + noise / 4
    vibration_t   = 0.3 flow_{t-2} + 0.7 vibration_{t-1} + noise

``load`` is a hidden setpoint process, not a sensor. On top comes a slow, small sinusoidal
drift per sensor (a multi-day period) that is part of normal operation. The couplings
between sensors are :data:`COUPLINGS` (driver, driven, lag), the truth for
Granger-causality tests.

All randomness of the physics is drawn up front from one ``numpy`` generator (device
parameters, then every noise term), and every known sensor is always simulated, so the
choice of sensors and the fault plan never shift the random streams.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.simulate.faults import (
    FAULT_KINDS,
    Coupling,
    Fault,
    FaultPlan,
    FaultSpec,
    apply_faults,
    random_faults,
)

#: Sensors the physics knows, in simulation order.
KNOWN_SENSORS: tuple[str, ...] = ("current", "flow", "pressure", "temperature", "vibration")

#: True sensor-to-sensor couplings: ``(driver, driven, lag in samples)``.
COUPLINGS: tuple[Coupling, ...] = (
    ("current", "flow", 1),
    ("flow", "pressure", 1),
    ("current", "temperature", 1),
    ("flow", "vibration", 2),
)

#: Engineering-unit ``(offset, scale)`` per sensor, before per-device variation.
UNITS: dict[str, tuple[float, float]] = {
    "current": (5.0, 25.0),  # A
    "flow": (0.0, 100.0),  # m3/h
    "pressure": (1.0, 5.0),  # bar
    "temperature": (25.0, 30.0),  # C
    "vibration": (0.5, 2.0),  # mm/s
}

#: 2024-01-01T00:00:00Z, so simulated days start at midnight.
DEFAULT_START_TS = 1_704_067_200.0


@dataclass(frozen=True)
class PlantConfig:
    """Settings of a simulated plant.

    Parameters
    ----------
    n_devices : int
        Number of pumps.
    sensors : tuple of str
        Sensors per pump, a subset of :data:`KNOWN_SENSORS` in any order.
    period_s : float
        Seconds between samples.
    start_ts : float
        Epoch timestamp of sample 0.
    day_length : int
        Samples per simulated day (the period of the daily load cycle).
    noise : float
        Measurement/process noise, in latent units (signal level is about 1).
    drift : float
        Amplitude of the slow normal drift, in latent units.
    seed : int
        Seed of the physics and of the fault magnitudes.
    """

    n_devices: int = 20
    sensors: tuple[str, ...] = ("current", "flow", "pressure", "temperature")
    period_s: float = 1.0
    start_ts: float = DEFAULT_START_TS
    day_length: int = 1440
    noise: float = 0.02
    drift: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [s for s in self.sensors if s not in KNOWN_SENSORS]
        if unknown or not self.sensors or len(set(self.sensors)) != len(self.sensors):
            raise ValueError(f"sensors must be distinct names from {KNOWN_SENSORS}")
        if self.n_devices < 1 or self.day_length < 2 or self.period_s <= 0:
            raise ValueError("need n_devices >= 1, day_length >= 2 and period_s > 0")


@dataclass
class PlantRun:
    """Result of :func:`simulate_plant`: values, timestamps and ground truth.

    Attributes
    ----------
    values : numpy.ndarray
        Float64, shape ``(n_devices, n_ticks, n_sensors)``, faults included.
    timestamps : numpy.ndarray
        Float64 epoch seconds, shape ``(n_ticks,)``.
    devices : list of str
        Device names (``"pump-000"``, ...).
    sensors : tuple of str
        Sensor names, the last axis of ``values``.
    faults : list of Fault
        Injected faults (ground truth).
    couplings : list of (str, str, int)
        True couplings among ``sensors``.
    config : PlantConfig
        The configuration that produced the run.
    """

    values: np.ndarray
    timestamps: np.ndarray
    devices: list[str]
    sensors: tuple[str, ...]
    faults: list[Fault]
    couplings: list[Coupling]
    config: PlantConfig = field(default_factory=PlantConfig)

    @property
    def n_ticks(self) -> int:
        """Number of samples per device and sensor."""
        return int(self.values.shape[1])

    def truth_mask(self, device: str) -> np.ndarray:
        """Boolean ``(n_ticks,)``: ``True`` inside any fault window of ``device``."""
        if device not in self.devices:
            raise KeyError(device)
        mask = np.zeros(self.n_ticks, dtype=bool)
        for f in self.faults:
            if f.device == device:
                mask[f.start : f.end] = True
        return mask

    def to_truth_json(self) -> dict[str, Any]:
        """Ground truth as a JSON-safe dict (faults, couplings and the time axis)."""
        return {
            "kind": "plant",
            "devices": list(self.devices),
            "sensors": list(self.sensors),
            "n_ticks": self.n_ticks,
            "start_ts": float(self.timestamps[0]) if self.n_ticks else self.config.start_ts,
            "period_s": self.config.period_s,
            "seed": self.config.seed,
            "couplings": [[d, s, lag] for d, s, lag in self.couplings],
            "faults": [f.to_json() for f in self.faults],
        }

    def readings(self) -> Iterator[dict[str, Any]]:
        """Single readings ``{"device", "sensor", "ts", "value"}``: by tick, device, sensor."""
        ts_list = self.timestamps.tolist()
        for t, ts in enumerate(ts_list):
            rows = self.values[:, t, :].tolist()  # plain floats, cheaper than numpy scalars
            for dev, row in zip(self.devices, rows, strict=True):
                for sensor, value in zip(self.sensors, row, strict=True):
                    yield {"device": dev, "sensor": sensor, "ts": ts, "value": value}

    def batches(self) -> Iterator[dict[str, Any]]:
        """One message per device and tick: ``{"device", "ts", "values": {sensor: value}}``."""
        ts_list = self.timestamps.tolist()
        for t, ts in enumerate(ts_list):
            rows = self.values[:, t, :].tolist()
            for dev, row in zip(self.devices, rows, strict=True):
                yield {"device": dev, "ts": ts, "values": dict(zip(self.sensors, row, strict=True))}

    def tick_batches(self, per_message: int) -> Iterator[dict[str, Any]]:
        """``per_message`` ticks of a device per message (the last may hold fewer):
        ``{"device", "ticks": [{"ts", "values": {sensor: value}}, ...]}``."""
        if per_message < 1:
            raise ValueError("per_message must be at least 1")
        ts_list = self.timestamps.tolist()
        for start in range(0, len(ts_list), per_message):
            span = range(start, min(start + per_message, len(ts_list)))
            rows = self.values[:, span.start : span.stop, :].tolist()
            for dev, dev_rows in zip(self.devices, rows, strict=True):
                yield {
                    "device": dev,
                    "ticks": [
                        {"ts": ts_list[t], "values": dict(zip(self.sensors, row, strict=True))}
                        for t, row in zip(span, dev_rows, strict=True)
                    ],
                }


def faults_from_truth_json(truth: dict[str, Any]) -> list[Fault]:
    """The faults of a :meth:`PlantRun.to_truth_json` dict."""
    return [Fault.from_json(f) for f in truth["faults"]]


class Plant:
    """A configured plant: names, coupling graph, fault planning and simulation.

    Parameters
    ----------
    config : PlantConfig, optional
        Settings; the defaults give 20 pumps with four sensors.
    """

    def __init__(self, config: PlantConfig | None = None) -> None:
        self.config = config or PlantConfig()

    @property
    def devices(self) -> list[str]:
        """Device names, ``pump-000`` onwards."""
        return [f"pump-{i:03d}" for i in range(self.config.n_devices)]

    @property
    def sensors(self) -> tuple[str, ...]:
        """Sensor names, in value order."""
        return self.config.sensors

    @property
    def couplings(self) -> list[Coupling]:
        """True couplings ``(driver, driven, lag)`` between the configured sensors."""
        s = set(self.config.sensors)
        return [c for c in COUPLINGS if c[0] in s and c[1] in s]

    def random_faults(
        self,
        n: int,
        n_ticks: int,
        kinds: Sequence[str] = FAULT_KINDS,
        rng: np.random.Generator | int | None = None,
        **kwargs: Any,
    ) -> FaultPlan:
        """:func:`~stream.simulate.faults.random_faults` for this plant.

        ``rng`` defaults to a generator seeded from the plant seed; ``kwargs`` go to
        :func:`~stream.simulate.faults.random_faults` (``min_gap``, ``duration``,
        ``warmup``).
        """
        kinds = [k for k in kinds if k != "decoupling" or self.couplings]
        gen = np.random.default_rng([self.config.seed, 0x9A1] if rng is None else rng)
        return random_faults(
            n,
            kinds,
            gen,
            n_ticks=n_ticks,
            devices=self.devices,
            sensors=self.sensors,
            couplings=self.couplings,
            **kwargs,
        )

    def simulate(
        self, n_ticks: int, faults: FaultPlan | Sequence[FaultSpec] | None = None
    ) -> PlantRun:
        """Run the physics for ``n_ticks`` samples, then inject ``faults``."""
        cfg = self.config
        if n_ticks < 1:
            raise ValueError("n_ticks must be >= 1")
        latent = _simulate_latent(cfg, n_ticks)
        cols = [KNOWN_SENSORS.index(s) for s in cfg.sensors]
        rng = np.random.default_rng([cfg.seed, 0x5CA1E])
        offset = np.array([UNITS[s][0] for s in KNOWN_SENSORS])
        scale = np.array([UNITS[s][1] for s in KNOWN_SENSORS])
        # Per-device calibration, so normalisation across devices matters downstream;
        # drawn for every known sensor so the sensor choice never shifts the stream.
        shape = (cfg.n_devices, 1, len(KNOWN_SENSORS))
        offset = (offset * rng.uniform(0.7, 1.3, shape))[:, :, cols]
        scale = (scale * rng.uniform(0.7, 1.3, shape))[:, :, cols]
        clean = offset + scale * latent[:, :, cols]
        timestamps = cfg.start_ts + cfg.period_s * np.arange(n_ticks, dtype=np.float64)
        specs = list(faults) if faults is not None else []
        values, truth = apply_faults(
            clean,
            self.devices,
            cfg.sensors,
            self.couplings,
            specs,
            cfg.seed,
            timestamps,
            cfg.period_s,
        )
        return PlantRun(values, timestamps, self.devices, cfg.sensors, truth, self.couplings, cfg)


def simulate_plant(
    config: PlantConfig | None = None,
    n_ticks: int = 5_000,
    faults: FaultPlan | Sequence[FaultSpec] | None = None,
) -> PlantRun:
    """Simulate a plant; shorthand for ``Plant(config).simulate(n_ticks, faults)``.

    Examples
    --------
    >>> run = simulate_plant(PlantConfig(n_devices=2), n_ticks=100)
    >>> run.values.shape
    (2, 100, 4)
    """
    return Plant(config).simulate(n_ticks, faults)


def _simulate_latent(cfg: PlantConfig, n_ticks: int) -> np.ndarray:
    """Latent physics for every known sensor, shape ``(n_devices, n_ticks, 5)``."""
    rng = np.random.default_rng(cfg.seed)
    n_dev, n_sen = cfg.n_devices, len(KNOWN_SENSORS)
    gain = rng.uniform(0.9, 1.1, n_dev)
    amp = rng.uniform(0.2, 0.4, n_dev)
    phase = rng.uniform(0.0, 2 * math.pi, n_dev)
    drift_amp = cfg.drift * rng.uniform(0.0, 1.0, (n_dev, n_sen))
    drift_period = cfg.day_length * rng.uniform(3.0, 10.0, (n_dev, n_sen))
    drift_phase = rng.uniform(0.0, 2 * math.pi, (n_dev, n_sen))
    # Noise is drawn once, up front: (tick, channel, device), channel 0 is the load.
    eps = rng.standard_normal((n_ticks, n_sen + 1, n_dev))

    t = np.arange(n_ticks, dtype=np.float64)
    setpoint = 1.0 + amp[None, :] * np.sin(2 * math.pi * t[:, None] / cfg.day_length + phase)
    sig = cfg.noise
    u = np.zeros(n_dev)
    cur = np.empty((n_ticks, n_dev))
    flow = np.empty_like(cur)
    pres = np.empty_like(cur)
    temp = np.empty_like(cur)
    vib = np.empty_like(cur)
    # Start at the steady state of the setpoint so there is no start-up transient.
    prev_c = gain * setpoint[0]
    prev_f = prev_p = prev_t = prev_v = prev_c
    prev_f2 = prev_c
    for k in range(n_ticks):
        u = 0.95 * u + 0.03 * eps[k, 0]
        c = gain * (setpoint[k] + u) + sig * eps[k, 1]
        f = 0.4 * prev_c + 0.6 * prev_f + sig * eps[k, 2]
        p = 0.5 * prev_f + 0.5 * prev_p + sig * eps[k, 3]
        tt = 0.97 * prev_t + 0.03 * prev_c + 0.25 * sig * eps[k, 4]
        v = 0.3 * prev_f2 + 0.7 * prev_v + sig * eps[k, 5]
        cur[k], flow[k], pres[k], temp[k], vib[k] = c, f, p, tt, v
        prev_f2 = prev_f  # flow two ticks back, for the lag-2 vibration coupling
        prev_c, prev_f, prev_p, prev_t, prev_v = c, f, p, tt, v
    latent = np.stack([cur, flow, pres, temp, vib], axis=2).transpose(1, 0, 2)
    drift = drift_amp[:, None, :] * np.sin(
        2 * math.pi * t[None, :, None] / drift_period[:, None, :] + drift_phase[:, None, :]
    )
    return np.ascontiguousarray(latent + drift)
