"""Fault injection for the simulated plant, with the ground truth it produces.

Faults are *measurement-layer* edits applied to the finished, fault-free value array:
the physics is simulated first, then each fault rewrites only the samples inside its
window ``[start, end)``. Two consequences the tests rely on:

* a run with faults equals the run without them outside every fault window, and
* the random streams of the physics never depend on the faults (each fault draws from
  its own generator, seeded by the plant seed and the fault's position in the plan).

Magnitudes are in units of the sensor's *local noise* ``sigma``, estimated on the clean
series as ``std(diff(x)) / sqrt(2)`` per device and sensor, so a 6 sigma spike means the
same thing for a 30 A current and a 6 bar pressure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Every kind of fault :func:`apply_faults` knows.
FAULT_KINDS: tuple[str, ...] = (
    "spike",
    "level_shift",
    "stuck",
    "drift",
    "decoupling",
    "cross_talk",
)

#: A coupling of the plant: ``(driver sensor, driven sensor, lag in samples)``.
Coupling = tuple[str, str, int]


@dataclass(frozen=True)
class FaultSpec:
    """A fault to inject (a request; :class:`Fault` is the resulting ground truth).

    Parameters
    ----------
    device : str
        Device name, e.g. ``"pump-003"``.
    sensors : tuple of str
        Sensors the fault edits. For ``decoupling`` they must be driven sensors.
    kind : str
        One of :data:`FAULT_KINDS`.
    start, end : int
        Sample window ``[start, end)``.
    magnitude : float, optional
        Size of the fault: signed sigmas for ``spike``/``level_shift``/``drift`` (the
        drift's final offset), the gain for ``cross_talk``; unused otherwise. Drawn at
        random when omitted.
    source : str, optional
        ``cross_talk`` only: the leaking signal, ``"sensor"`` (same device) or
        ``"device:sensor"``. Defaults to the same sensor of the next device.
    """

    device: str
    sensors: tuple[str, ...]
    kind: str
    start: int
    end: int
    magnitude: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"bad fault window [{self.start}, {self.end})")
        if not self.sensors:
            raise ValueError("a fault needs at least one sensor")


@dataclass(frozen=True)
class Fault:
    """Ground truth of one injected fault (JSON-safe via :meth:`to_json`).

    ``end`` is exclusive, and so is ``end_ts`` (the timestamp of sample ``end``).
    ``magnitude`` and ``source`` are as in :class:`FaultSpec`, resolved; for
    ``decoupling`` ``source`` names the driver(s) the sensor stopped following.
    """

    device: str
    sensors: tuple[str, ...]
    kind: str
    start: int
    end: int
    start_ts: float
    end_ts: float
    magnitude: float | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """This fault as a JSON-safe dict."""
        d = asdict(self)
        d["sensors"] = list(self.sensors)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Fault:
        """Rebuild a fault from :meth:`to_json` output."""
        return cls(
            device=str(d["device"]),
            sensors=tuple(str(s) for s in d["sensors"]),
            kind=str(d["kind"]),
            start=int(d["start"]),
            end=int(d["end"]),
            start_ts=float(d["start_ts"]),
            end_ts=float(d["end_ts"]),
            magnitude=None if d.get("magnitude") is None else float(d["magnitude"]),
            source=None if d.get("source") is None else str(d["source"]),
        )


@dataclass(frozen=True)
class FaultPlan:
    """An ordered set of faults to inject; build it explicitly or with :meth:`random`."""

    specs: tuple[FaultSpec, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[FaultSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    @classmethod
    def random(
        cls,
        n: int,
        kinds: Sequence[str] = FAULT_KINDS,
        rng: np.random.Generator | int | None = None,
        **kwargs: Any,
    ) -> FaultPlan:
        """Same as :func:`random_faults`."""
        return random_faults(n, kinds, rng, **kwargs)


def random_faults(
    n: int,
    kinds: Sequence[str] = FAULT_KINDS,
    rng: np.random.Generator | int | None = None,
    *,
    n_ticks: int,
    devices: Sequence[str],
    sensors: Sequence[str],
    couplings: Sequence[Coupling] = (),
    min_gap: int = 50,
    duration: tuple[int, int] = (30, 300),
    warmup: float = 0.3,
    max_tries: int = 10_000,
) -> FaultPlan:
    """Place ``n`` random faults, non-overlapping per device, after a fault-free warm-up.

    Parameters
    ----------
    n : int
        Number of faults.
    kinds : sequence of str
        Kinds to draw from; they are cycled in a shuffled order, so every kind appears
        once ``n >= len(kinds)``.
    rng : numpy.random.Generator or int, optional
        Randomness (an int is a seed).
    n_ticks : int
        Length of the run the plan is for.
    devices, sensors : sequence of str
        Names of the plant's devices and sensors.
    couplings : sequence of (driver, driven, lag)
        Needed for ``decoupling`` (which sensors have a driver).
    min_gap : int
        Minimum number of clean samples between two faults of one device.
    duration : (int, int)
        Inclusive range of window lengths; ``spike`` always lasts 1 to 3 samples.
    warmup : float
        Fraction of the run, from its start, that stays fault-free.
    max_tries : int
        Give up (``ValueError``) after this many rejected placements.

    Returns
    -------
    FaultPlan
        The faults, in the order they were drawn.
    """
    gen = np.random.default_rng(rng)
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise ValueError(f"bad fault kinds {bad or kinds!r}")
    driven = [(d, s) for d, s, _ in couplings if d in sensors and s in sensors]
    if "decoupling" in kinds and not driven:
        raise ValueError("decoupling faults need couplings between the chosen sensors")
    first = int(np.ceil(warmup * n_ticks))
    order = [kinds[i] for i in gen.permutation(len(kinds))]
    taken: dict[str, list[tuple[int, int]]] = {d: [] for d in devices}
    specs: list[FaultSpec] = []
    tries = 0
    for i in range(n):
        kind = order[i % len(order)]
        while True:
            tries += 1
            if tries > max_tries:
                raise ValueError(f"could not place {n} faults in {n_ticks} ticks; lower n")
            dev = devices[int(gen.integers(len(devices)))]
            length = (
                int(gen.integers(1, 4))
                if kind == "spike"
                else int(gen.integers(duration[0], duration[1] + 1))
            )
            if n_ticks - length <= first:
                continue
            start = int(gen.integers(first, n_ticks - length + 1))
            end = start + length
            # The gap keeps windows (and their after-effects on detectors) apart.
            if all(end + min_gap <= a or b + min_gap <= start for a, b in taken[dev]):
                break
        taken[dev].append((start, end))
        specs.append(_random_spec(gen, kind, dev, start, end, devices, sensors, driven))
    return FaultPlan(tuple(specs))


def _random_spec(
    gen: np.random.Generator,
    kind: str,
    dev: str,
    start: int,
    end: int,
    devices: Sequence[str],
    sensors: Sequence[str],
    driven: Sequence[tuple[str, str]],
) -> FaultSpec:
    """Pick the sensors and source of one random fault."""
    source: str | None = None
    if kind == "decoupling":
        chosen = (driven[int(gen.integers(len(driven)))][1],)
    else:
        chosen = (sensors[int(gen.integers(len(sensors)))],)
    if kind == "cross_talk":
        victim = chosen[0]
        others = [s for s in sensors if s != victim]
        if len(devices) > 1 and (not others or gen.random() < 0.5):
            other_dev = [d for d in devices if d != dev][int(gen.integers(len(devices) - 1))]
            source = f"{other_dev}:{victim}"
        elif others:
            source = others[int(gen.integers(len(others)))]
        else:
            raise ValueError("cross_talk needs a second device or sensor")
    return FaultSpec(dev, chosen, kind, start, end, source=source)


def noise_sigma(values: np.ndarray) -> np.ndarray:
    """Local noise scale per device and sensor: ``std(diff(x)) / sqrt(2)``.

    Parameters
    ----------
    values : numpy.ndarray
        Shape ``(n_devices, n_ticks, n_sensors)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_devices, n_sensors)``, strictly positive.
    """
    if values.shape[1] < 3:
        return np.ones((values.shape[0], values.shape[2]))
    sig = np.std(np.diff(values, axis=1), axis=1) / np.sqrt(2.0)
    return np.maximum(sig, 1e-9)


def apply_faults(
    values: np.ndarray,
    devices: Sequence[str],
    sensors: Sequence[str],
    couplings: Sequence[Coupling],
    specs: Sequence[FaultSpec],
    seed: int,
    timestamps: np.ndarray,
    period_s: float,
) -> tuple[np.ndarray, list[Fault]]:
    """Apply ``specs`` to a copy of the clean ``values``.

    Parameters
    ----------
    values : numpy.ndarray
        Clean values, shape ``(n_devices, n_ticks, n_sensors)``; not modified.
    devices, sensors : sequence of str
        Names along axes 0 and 2.
    couplings : sequence of (driver, driven, lag)
        The plant's coupling graph (for ``decoupling``).
    specs : sequence of FaultSpec
        Faults, applied in order.
    seed : int
        Plant seed; fault ``i`` draws from ``default_rng([seed, 0xFA17, i])``.
    timestamps : numpy.ndarray
        Sample timestamps, shape ``(n_ticks,)``.
    period_s : float
        Sampling period, for the exclusive ``end_ts`` of a fault ending at ``n_ticks``.

    Returns
    -------
    (numpy.ndarray, list of Fault)
        Faulty values and the ground truth.
    """
    out = values.copy()
    n_ticks = values.shape[1]
    sigma = noise_sigma(values)
    dev_ix = {d: i for i, d in enumerate(devices)}
    sen_ix = {s: j for j, s in enumerate(sensors)}
    truth: list[Fault] = []
    for k, spec in enumerate(specs):
        if spec.device not in dev_ix:
            raise ValueError(f"unknown device {spec.device!r}")
        if spec.end > n_ticks:
            raise ValueError(f"fault window [{spec.start}, {spec.end}) beyond {n_ticks} ticks")
        unknown = [s for s in spec.sensors if s not in sen_ix]
        if unknown:
            raise ValueError(f"unknown sensors {unknown}")
        gen = np.random.default_rng([seed, 0xFA17, k])
        i, a, b = dev_ix[spec.device], spec.start, spec.end
        magnitude, source = spec.magnitude, spec.source
        drivers: list[str] = []
        for name in spec.sensors:
            j = sen_ix[name]
            sig = float(sigma[i, j])
            if spec.kind == "spike":
                magnitude = magnitude if magnitude is not None else _signed(gen, 6.0, 12.0)
                out[i, a:b, j] += magnitude * sig
            elif spec.kind == "level_shift":
                magnitude = magnitude if magnitude is not None else _signed(gen, 4.0, 8.0)
                out[i, a:b, j] += magnitude * sig
            elif spec.kind == "drift":
                magnitude = magnitude if magnitude is not None else _signed(gen, 6.0, 12.0)
                ramp = np.arange(1, b - a + 1) / (b - a)
                out[i, a:b, j] += magnitude * sig * ramp
            elif spec.kind == "stuck":
                out[i, a:b, j] = out[i, a - 1, j] if a > 0 else out[i, a, j]
            elif spec.kind == "decoupling":
                drv, lag = _driver_of(name, couplings, sen_ix)
                drivers.append(drv)
                out[i, a:b, j] = _decoupled(
                    values[i, :, j], values[i, :, sen_ix[drv]], lag, a, b, gen
                )
            else:  # cross_talk
                if magnitude is None:
                    magnitude = float(gen.uniform(0.5, 1.0))
                if source is None:
                    source = f"{devices[(i + 1) % len(devices)]}:{name}"
                si, sj = _source_index(source, i, dev_ix, sen_ix)
                if (si, sj) == (i, j):
                    raise ValueError("a cross_talk source must differ from its victim")
                src = values[si, :, sj]
                gain = magnitude * np.std(values[i, :, j]) / max(float(np.std(src)), 1e-12)
                out[i, a:b, j] += gain * (src[a:b] - src[a:b].mean())
        if spec.kind == "decoupling":
            source = ",".join(drivers)
        end_ts = float(timestamps[0] + spec.end * period_s)
        truth.append(
            Fault(
                spec.device,
                tuple(spec.sensors),
                spec.kind,
                spec.start,
                spec.end,
                float(timestamps[spec.start]),
                end_ts,
                None if magnitude is None else float(magnitude),
                source,
            )
        )
    return out, truth


def _signed(gen: np.random.Generator, lo: float, hi: float) -> float:
    """A magnitude in ``[lo, hi)`` with a random sign."""
    return float(gen.uniform(lo, hi) * gen.choice((-1.0, 1.0)))


def _driver_of(
    driven: str, couplings: Sequence[Coupling], sen_ix: dict[str, int]
) -> tuple[str, int]:
    """The (first) driver of ``driven`` among the present sensors, with its lag."""
    for drv, dst, lag in couplings:
        if dst == driven and drv in sen_ix:
            return drv, lag
    raise ValueError(f"sensor {driven!r} has no driver; it cannot be decoupled")


def _decoupled(
    x: np.ndarray, d: np.ndarray, lag: int, a: int, b: int, gen: np.random.Generator
) -> np.ndarray:
    """``x[a:b]`` re-run with its driver replaced by an independent look-alike.

    Fits ``x_t = c0 + c1 x_{t-1} + c2 d_{t-lag}`` on the clean series, keeps its
    residuals (so the noise level is unchanged) and feeds the recursion an AR(1)
    surrogate with the driver's window mean and variance and its lag-1 autocorrelation.
    """
    m = max(lag, 1)
    X = np.column_stack([np.ones(len(x) - m), x[m - 1 : -1], d[m - lag : len(d) - lag]])
    coef, *_ = np.linalg.lstsq(X, x[m:], rcond=None)
    resid = np.zeros_like(x)
    resid[m:] = x[m:] - X @ coef
    rho = float(np.clip(np.corrcoef(d[:-1], d[1:])[0, 1], -0.999, 0.999))
    mu, sd = float(d[a:b].mean()), float(d.std() if b - a < 2 else d[a:b].std())
    sd = sd if sd > 0 else float(d.std())
    z = np.empty(b - a)
    z_prev = gen.standard_normal()
    for t in range(b - a):
        z_prev = rho * z_prev + np.sqrt(1.0 - rho * rho) * gen.standard_normal()
        z[t] = z_prev
    surrogate = mu + sd * z
    seg = np.empty(b - a)
    prev = x[a - 1] if a > 0 else x[a]
    for t in range(b - a):
        prev = coef[0] + coef[1] * prev + coef[2] * surrogate[t] + resid[a + t]
        seg[t] = prev
    return seg


def _source_index(
    source: str, dev: int, dev_ix: dict[str, int], sen_ix: dict[str, int]
) -> tuple[int, int]:
    """Device and sensor index of a cross-talk ``source`` (``"sensor"`` or ``"dev:sensor"``)."""
    src_dev, _, src_sen = source.rpartition(":")
    if src_sen not in sen_ix or (src_dev and src_dev not in dev_ix):
        raise ValueError(f"unknown cross-talk source {source!r}")
    return (dev_ix[src_dev] if src_dev else dev), sen_ix[src_sen]
