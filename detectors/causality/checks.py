"""Causal-structure checks of one device: decoupling, new links, lying sensors.

:class:`GrangerMonitor` watches the Granger causal graph (Granger 1969, "Investigating
Causal Relations by Econometric Models and Cross-spectral Methods") of a device's
sensors, e.g. a pump's ``current -> flow -> pressure`` and ``current -> temperature``.

Phases
------
1. **Warm-up** (``warmup`` samples, learn only): the statistics of a VAR(p) over the
   whole warm-up (:class:`~detectors.causality.var.OnlineVAR`, a growing window: no raw
   samples kept); the short window also runs, and the spread of its ``log F`` per pair
   is recorded (see below).
2. **Baseline** at the end of the warm-up: every ordered pair is tested (pairwise by
   default, see :mod:`detectors.causality.granger`); edges are pairs with
   ``p < alpha_edge``, their strength the partial R^2. The full VAR is fitted for the
   residual check and the warm-up memory is dropped.
3. **Monitoring** on a short exact sliding window of ``window`` rows:

   * ``decoupling``: a *watched* baseline edge is non-significant (``p > alpha``) at
     ``k_decouple`` consecutive test points, or the sequential test of an edge (see
     below; also for edges too weak to watch) crosses its threshold;
   * ``new_link``: a non-edge is significant at ``alpha_new`` Bonferroni-corrected over
     the ``d (d - 1)`` pairs at ``k_new`` consecutive test points;
   * ``residual``: the one-step prediction residual of a sensor from the baseline VAR
     is extreme (robust z, two-sided normal tail ``< alpha_residual``) while the
     sensor's baseline causes had ``|z| < z_normal`` over the last ``p + 1`` samples:
     the sensor, not its drivers, moved ("the sensor lies").

   Each finding is emitted once per episode: decoupling re-arms when the edge is
   significant at ``alpha_edge`` again (edges under the sequential test: when its
   reverse CUSUM crosses), new links when the pair is non-significant at ``alpha``,
   residuals after a calm stretch of ``window`` samples.

Decoupling false-alarm control (derivation)
-------------------------------------------
Under no change the short-window statistic is ``F = (chi2_p(lambda_s) / p) /
(chi2_df2 / df2)`` (noncentral numerator), with the noncentrality proportional to the
rows: ``lambda_s = lambda_b n_s / n_b``, ``lambda_b = p F_b (df2_b - 2) / df2_b - p`` (moment
estimate from the baseline F). By the delta method ``log F`` has mean
``log((p + lambda_s) / p * df2 / (df2 - 2))`` and variance
``2 (p + 2 lambda_s) / (p + lambda_s)^2 + 2 / df2`` (numerator and denominator). That
misses the sampling noise of the cause's power within a short window, which dominates
for slow causes, so the variance of the short-window ``log F`` observed during the
warm-up (every ``screen_every`` samples once the window is full), inflated 1.5x because
it rests on only ~``warmup / window`` independent windows, is used when larger. An edge
is *watched* only if ``log F_crit(alpha)`` lies ``power_z`` standard deviations below
that mean; then one test point falls under the bar
with probability about ``Phi(-power_z)``. With ``power_z = 5`` that is 2.9e-7, and even
counting every test point as an independent chance (``screen_every = 10``: 1e4 tests
per 1e5 samples) the rate is <= 3e-3 false alarms per 1e5 pair-samples; requiring
``k_decouple`` consecutive points only lowers it. The ~300x margin below the 1e-5
target absorbs the approximations, the estimated ``lambda_b`` and non-Gaussian noise.
Calibration: on 10 simulated fault-free pump plants (360,000 watched pair-samples,
``tests/detectors/test_granger_plants.py``) no decoupling alarm was raised. Weaker
baseline edges stay in the graph but are not watched: a short window cannot tell their
decoupling from noise. After a real decoupling the p-values are uniform, so each test
point passes the bar with probability ``1 - alpha``.

Sequential decoupling test (weak edges)
---------------------------------------
A window of ``window`` rows cannot see a weak edge decouple (partial R^2 ~0.15 needs
~1,000 rows to reach the watch margin), so every baseline edge whose contribution is
well estimated (baseline noncentrality ``lambda_b >= (2 power_z)^2``, i.e. half the
contribution lies ``power_z`` standard errors from the estimate) also runs Page's
CUSUM (Page 1954, "Continuous Inspection Schemes") on the per-sample log likelihood
ratio of "the cause no longer contributes" against "it contributes as at baseline".
At the baseline the edge's unrestricted model (the regressors of its Granger test) and
restricted model (without the cause's lags) are fitted on the warm-up; per sample, with
``e_u`` the unrestricted one-step residual and ``g = yhat_u - yhat_r`` the cause's
contribution to the prediction,

``s_t = log N(e_u + g; s^2) - log N(e_u; s^2) = -(e_u g + g^2 / 2) / s^2``,

``S_t = max(0, S_{t-1} + s_t)``, a finding when ``S_t >= h = log(arl0)``. If ``e_u`` is a
Gaussian innovation of variance ``s^2``, ``exp(s_t)`` has conditional mean 1 *whatever
the path of g*, so ``exp(S)`` is built from a likelihood-ratio martingale and Lorden's
bound (1971) gives an average run length to false alarm ``>= e^h = arl0`` per edge
(default 1e6 samples, 10x below the 1e-5 target); slow causes, whose power comes and goes
over a window, do not break it, unlike the window test's Gaussian approximation.
After a decoupling the drift is ``+g^2 / (2 s^2)`` per sample (partial R^2 0.17: ~0.1,
so ``h = 13.8`` is crossed after ~140 samples on average, instead of never).
Guards for what the bound assumes: ``e_u`` is clipped at ``4 s`` (a symmetric clip only
lowers the martingale: conservative under heavy tails); ``s^2`` is the baseline
unrestricted variance scaled up (never down) by the ratio of the restricted residual's
recent mean square to its baseline value (that ratio does not move when the edge
decouples, but does when the effect's noise grows); ``e_u`` and ``g`` are centred by
slow trackers (time constant ``5 window``, frozen during a decoupling episode) because
slow level drift of either sensor acts as a moving intercept and would bias ``e_u g``.
The episode ends when the reverse CUSUM (increments ``-s_t`` scaled by the effect's
recent unrestricted mean square) reaches ``h``. Measured on the plant simulator
(``bench/granger_plant.py``): every decoupling of the weak ``current -> temperature``
edge detected, median delay ~40 samples, and <= 0.3 false decoupling alarms per 1e5
tested pair-samples. ``arl0=None`` turns the test off.

Cost and state
--------------
Per sample: O(d) to move the window on, an O(m d) residual prediction (``m = d p + 1``)
and O(E m) for the sequential test of ``E`` edges. Every ``screen_every`` samples the
window's statistics are rebuilt from its rows (O(W k^2), ``k = d (p + 1) + 1``, one
matrix product) and the watched edges, the non-edges under suspicion and a
rotating subset of ``rotate`` other non-edges are tested (O((2p + 2)^3) each); all
``d (d - 1)`` pairs are tested only every ``test_every`` samples (a cheap pre-screen for
many sensors). State: the window's ``(window + p + 1) d`` samples as int16 steps
(:class:`~detectors.causality.var.OnlineVAR`; its ``k^2`` statistics are a cache, left
out of snapshots and dropped after each sample), ``m d`` coefficients, a few ``d x d``
tables, and for the sequential test, per edge, ``2 p`` slopes, an intercept and 6
statistics (float32) and its two sensors (int16), plus one restricted model per sensor
(pairwise; conditional: ``m - 1`` and ``m - 1 - p`` slopes per edge). Models are
stored centred on the warm-up's mean (:func:`_centred`), so float32 holds them
whatever the sensors' level. The warm-up adds the upper triangle of a second
statistics matrix (no raw samples), freed after the baseline. For 8 sensors, all 56
pairs coupled, that is about 9.5 KB during the warm-up and after it
(``bench/state_size.py``).
During the warm-up all pairs of the short window are also tested every ``screen_every``
samples.

Many devices' monitors run their per-sample work stacked, one numpy call per step for
all of them: :mod:`detectors.causality.stacked` (what a worker does with a batch).

Use it for devices whose sensors are physically coupled with lags of a few samples.
Do not use it for uncoupled sensors (no edges: only the residual check remains),
couplings that are instantaneous at the sampling rate (lag 0 is not tested), or
strongly non-linear or regime-switching couplings (the VAR is linear; refit the
baseline per regime).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from detectors._arrays import normal_two_sided_tail, pack, tail_to_score, unpack
from detectors.base import MultivariateDetector
from detectors.causality._fdist import f_isf, f_sf, normal_lower_tail
from detectors.causality.granger import (
    GrangerResult,
    all_pairs,
    conditional_granger,
    pairwise_granger,
)
from detectors.causality.var import OnlineVAR
from detectors.registry import register

KINDS = ("decoupling", "new_link", "residual")
#: Inflation of the warm-up's observed sd of log F (it rests on ~warmup / window
#: independent windows, so it can be low by ~30%).
_EMPIRICAL_INFLATE = 1.5
#: Clip of the unrestricted residual in the sequential test, in baseline sds (keeps the
#: likelihood-ratio supermartingale under heavier-than-normal tails).
_SEQ_CLIP = 4.0
#: Time constant of the sequential test's level trackers, in ``window`` lengths.
_SEQ_MEAN = 5.0
#: Rate of its noise-level tracker, per ``window`` samples (fast: after a decoupling
#: the effect may be much noisier, and the re-arm test needs the right scale soon).
_SEQ_VAR = 8.0


@dataclass(frozen=True)
class CausalityFinding:
    """One causal-structure anomaly.

    Attributes
    ----------
    kind : str
        ``"decoupling"``, ``"new_link"`` or ``"residual"``.
    cause, effect : str
        The edge ``cause -> effect``; for ``residual`` the effect is the lying sensor
        and ``cause`` lists its baseline drivers, comma separated (may be empty).
    strength_before, strength_now : float
        Partial R^2 of the edge at baseline and in the short window; for ``residual``
        the baseline residual scale and the absolute residual.
    p_before, p_now : float
        Granger p-values at baseline and now; for ``residual`` ``nan`` and the
        two-sided normal tail of the residual's robust z.
    score : float
        In ``[0, 1]``: ``1 -`` the tail probability of the evidence under no change.
    ts_index : int
        0-based index of the sample at which the finding was made.
    """

    kind: str
    cause: str
    effect: str
    strength_before: float
    strength_now: float
    p_before: float
    p_now: float
    score: float
    ts_index: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``nan`` becomes ``None``)."""
        out = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _at(a: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``a[flat // d, flat % d]`` of a ``(d, d)`` array, by its flat indices."""
    return a.reshape(-1)[flat]


@functools.lru_cache(maxsize=256)
def _crit(alpha: float, df1: float, df2: float) -> float:
    # Critical values depend only on (alpha, dof): cache them, tests compare F to them.
    return f_isf(alpha, df1, df2)


#: Baseline arrays kept in a narrower type than they are computed in: statistics read
#: only at one pair at a time or reported (float32 holds them to 7 digits), the centred
#: models (see :func:`_centred`) and indices.
_BASE_DTYPES: dict[str, type[np.generic]] = {
    "p": np.float32,
    "coef": np.float32,
    "seq_bu": np.float32,
    "seq_br": np.float32,
    "seq_cu": np.float32,
    "seq_cr": np.float32,
    "seq_s2u": np.float32,
    "seq_s2r": np.float32,
    "r2": np.float32,
    "mean_s": np.float32,
    "sd_s": np.float32,
    "nonedge": np.int32,
    "seq_cause": np.int16,
    "seq_effect": np.int16,
}


def _compact_base(base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The baseline as stored: narrow types where they lose nothing the checks use, and
    without the baseline F (snapshots before 2026-12-02 have it; p and R^2 say it all)."""
    base.pop("f", None)
    for key in ("seq_s2u", "seq_s2r"):  # divisors: never below float32's smallest normal
        if key in base:
            base[key] = np.maximum(base[key], np.finfo(np.float32).tiny)
    # copy=False: the edges' two arrays are views into one (see _set_sequential_columns)
    return {
        k: v.astype(_BASE_DTYPES[k], copy=False) if k in _BASE_DTYPES else v
        for k, v in base.items()
    }


def _centred(
    coef: np.ndarray, cols: np.ndarray, centre: np.ndarray, target: np.ndarray
) -> dict[str, np.ndarray]:
    """Models ``y = b_0 + sum_k b_k z_k`` (row-wise; ``cols`` the regressor positions, 0
    the intercept) as ``y = t + c + sum_k b_k (z_k - s_k)``: ``s`` the baseline centre
    of each regressor (``centre``, indexed by position), ``t`` that of each model's
    target (``target``).

    Intercepts and slopes are then float32: applied to raw values of a large level,
    float32 would put an error of ~1e-7 of the level into every prediction; applied
    to deviations from the centre, ~1e-7 of the deviation.
    """
    c = coef[:, 0] + np.einsum("ij,ij->i", coef[:, 1:], centre[cols[:, 1:]]) - target
    return {"c": c.astype(np.float32), "b": coef[:, 1:].astype(np.float32)}


def _welford_log_f(
    wf: np.ndarray, n: np.ndarray, f: np.ndarray, cause: np.ndarray, effect: np.ndarray
) -> None:
    """Welford steps of the warm-up spread of log F, in place: ``wf`` (monitors, 2, d,
    d) holds each monitor's mean and M2 per pair, ``n`` its count with this step,
    ``f`` (monitors, pairs) the F statistics of the pairs ``cause -> effect``."""
    lf = np.log(np.maximum(np.nan_to_num(f, nan=0.0), 1e-300))
    mean, m2 = wf[:, 0], wf[:, 1]
    delta = lf - mean[:, cause, effect]
    mean[:, cause, effect] += delta / n[:, None]
    m2[:, cause, effect] += delta * (lf - mean[:, cause, effect])


def _sequential_step(
    seq: np.ndarray,
    armed: np.ndarray,
    yj: np.ndarray,
    pred_u: np.ndarray,
    pred_r: np.ndarray,
    s2u: np.ndarray,
    s2r: np.ndarray,
    window: int,
) -> None:
    """One step of the sequential decoupling test of every edge, in place on its
    float64 statistics ``seq`` (5, edges): the CUSUM while the edge is ``armed``, the
    reverse CUSUM while it is not (each is 0 whenever the other runs, so they share
    row 0); then the trackers. ``yj`` is each edge's effect now (minus the centre),
    ``pred_u`` / ``pred_r`` its unrestricted and restricted predictions, ``s2u`` /
    ``s2r`` their baseline variances. See "Sequential decoupling test" in the module
    docstring; one device's edges or many devices' end to end."""
    cusum, v, m_u, m_g, u2 = seq
    g = pred_u - pred_r  # the cause's contribution to the prediction
    # Slow level drift of either sensor biases the one-step residuals (a moving
    # intercept): centre e_u and g by slow trackers fed only with past samples,
    # and frozen during a decoupling episode (they must not learn the fault).
    e_u = yj - pred_u - m_u
    gc = g - m_g
    e_rc = e_u + gc
    # The effect's noise may grow (a fault elsewhere, a noisier regime): scale the
    # baseline variance up with it, never down, so the test stays conservative.
    s2 = s2u * np.maximum(1.0, v / s2r)
    rate = armed * (1.0 / (_SEQ_MEAN * window))  # 0 while disarmed
    m_u += rate * e_u
    m_g += rate * gc
    v += (e_rc * e_rc - v) * (_SEQ_VAR / window)
    s2_now = np.maximum(u2, s2u)  # the effect's scale now, for re-arming
    u2 += (e_u * e_u - u2) * (_SEQ_VAR / window)
    # log f_restricted / f_unrestricted; the forward statistic clips the residual
    # (conservative under heavy tails). The reverse one (re-arming) scales by the
    # effect's current unrestricted mean square: a decoupled effect can be far
    # noisier than at baseline, and the baseline scale would then favour "coupled".
    limit = _SEQ_CLIP * np.sqrt(s2)  # (minimum/maximum: np.clip costs 3x on short arrays)
    fwd = -(np.minimum(np.maximum(e_u, -limit), limit) * gc + 0.5 * gc * gc) / s2
    rev = (e_u * gc + 0.5 * gc * gc) / s2_now
    cusum[:] = np.maximum(0.0, cusum + np.where(armed, fwd, rev))


class PairTests(NamedTuple):
    """The pairs a test point of a monitor tests (flat indices ``cause * d + effect``),
    chosen by its caller, with their F statistics and partial R² if the caller tested
    them (``None``: the monitor tests them itself)."""

    flat: np.ndarray
    f: np.ndarray | None
    r2: np.ndarray | None


@register("granger_monitor")
class GrangerMonitor(MultivariateDetector):
    """Online Granger-causality monitor of one device (see the module docstring).

    Parameters
    ----------
    sensors
        Sensor names, in the order of the observation vector.
    lag
        VAR order ``p`` (samples).
    window
        Rows of the short monitoring window (sets the detection delay: a decoupling
        is seen after roughly ``0.8 window + k_decouple screen_every`` samples).
    warmup
        Learn-only samples; the baseline graph is estimated on them.
    alpha_edge
        Baseline edge level (and re-arm level of decoupling).
    alpha
        Decoupling level: a watched edge with ``p > alpha`` counts as decoupled.
    k_decouple
        Consecutive decoupled test points before a finding.
    power_z
        Watched-edge margin in standard deviations (false-alarm control).
    alpha_new
        Family-wise level of ``new_link`` per test point (Bonferroni over pairs).
    k_new
        Consecutive significant test points before a ``new_link`` finding.
    alpha_residual
        Two-sided tail level of the residual check.
    z_normal
        ``|z|`` under which a driver "looks normal" (and a sensor is calm again).
    screen_every
        Samples between test points of watched edges and suspect pairs.
    test_every
        Samples between sweeps over all pairs.
    rotate
        Extra non-edges tested at each screen point (default ``d``).
    conditional
        Use conditional (multivariate) tests instead of pairwise ones; then every test
        point covers all pairs.
    ridge
        Relative ridge of the normal equations.
    arl0
        Average run length to a false sequential-test alarm per edge, in samples (the
        CUSUM threshold is ``log(arl0)``); ``None`` disables the sequential test.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> n = 3000
    >>> y = np.zeros((n, 2))
    >>> for t in range(1, n):
    ...     y[t, 0] = 0.8 * y[t - 1, 0] + rng.normal()
    ...     y[t, 1] = 0.9 * y[t - 1, 0] + 0.3 * rng.normal()
    >>> y[2500:, 1] = rng.normal(0.0, y[:2500, 1].std(), n - 2500)  # flow decouples
    >>> mon = GrangerMonitor(["current", "flow"], lag=2, window=200, warmup=1500)
    >>> found = [f for row in y for f in mon.update(row)]
    >>> [(f.kind, f.cause, f.effect) for f in found if f.kind != "residual"]
    [('decoupling', 'current', 'flow')]
    >>> [e["cause"] + "->" + e["effect"] for e in mon.baseline_graph() if e["watched"]]
    ['current->flow']
    """

    #: 2: the warm-up keeps no raw samples; sequential models store their own columns.
    version: ClassVar[int] = 2

    def __init__(
        self,
        sensors: list[str],
        lag: int = 3,
        window: int = 200,
        warmup: int = 2000,
        alpha_edge: float = 1e-3,
        alpha: float = 0.01,
        k_decouple: int = 3,
        power_z: float = 5.0,
        alpha_new: float = 1e-4,
        k_new: int = 3,
        alpha_residual: float = 1e-6,
        z_normal: float = 3.0,
        screen_every: int = 10,
        test_every: int = 100,
        rotate: int | None = None,
        conditional: bool = False,
        ridge: float = 1e-12,
        arl0: float | None = 1e6,
    ) -> None:
        self.sensors = [str(s) for s in sensors]
        d = len(self.sensors)
        if d < 2 or len(set(self.sensors)) != d:
            raise ValueError("need at least two distinct sensor names")
        if d * lag >= 2**15:
            raise ValueError("d * lag must be below 32768 (regressor positions are int16)")
        n_reg = d * lag + 1 if conditional else 2 * lag + 1
        if lag < 1 or window <= n_reg + 2:
            raise ValueError(f"window must exceed {n_reg + 2} rows for lag {lag}")
        if warmup < window + lag + 1:
            raise ValueError("warmup must be at least window + lag + 1 samples")
        for name, a in (
            ("alpha_edge", alpha_edge),
            ("alpha", alpha),
            ("alpha_new", alpha_new),
            ("alpha_residual", alpha_residual),
        ):
            if not 0.0 < a < 1.0:
                raise ValueError(f"{name} must be in (0, 1)")
        if normal_two_sided_tail(np.asarray(z_normal)) <= alpha_residual:
            raise ValueError("z_normal must be below the residual alarm's z")
        if arl0 is not None and not arl0 > 1.0:
            raise ValueError("arl0 must exceed 1 (or be None to disable the sequential test)")
        if min(k_decouple, k_new, screen_every, test_every) < 1:
            raise ValueError("k_decouple, k_new, screen_every and test_every must be >= 1")
        if max(k_decouple, k_new) >= 2**15:
            raise ValueError("k_decouple and k_new must be below 32768")
        self.lag = int(lag)
        self.window = int(window)
        self.warmup = int(warmup)
        self.alpha_edge = float(alpha_edge)
        self.alpha = float(alpha)
        self.k_decouple = int(k_decouple)
        self.power_z = float(power_z)
        self.alpha_new = float(alpha_new)
        self.k_new = int(k_new)
        self.alpha_residual = float(alpha_residual)
        self.z_normal = float(z_normal)
        self.screen_every = int(screen_every)
        self.test_every = int(test_every)
        self.rotate = d if rotate is None else int(rotate)
        self.conditional = bool(conditional)
        self.ridge = float(ridge)
        self.arl0 = None if arl0 is None else float(arl0)
        self.d = d
        self.n_pairs = d * (d - 1)
        # int16 ring of centred samples: the largest part of the state (var.py)
        self._short = OnlineVAR(d, self.lag, window=self.window, storage="int16")
        self._long: OnlineVAR | None = self._warmup_var()
        self._t = 0
        self._rot = 0
        self._base: dict[str, np.ndarray] | None = None
        # The baseline packed for snapshots, with the baseline it packs: a baseline is
        # never changed once built (only replaced), and packing it was a quarter of a
        # device's snapshot, written at every checkpoint.
        self._packed_base: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None
        z = np.zeros((d, d), dtype=np.int16)
        self._dec_count = z.copy()
        self._new_count = z.copy()
        self._dec_armed = np.ones((d, d), dtype=bool)
        self._new_armed = np.ones((d, d), dtype=bool)
        self._res_armed = np.ones(d, dtype=bool)
        self._res_calm = np.zeros(d, dtype=np.int32)  # calm samples, counted to `window`
        self._zhist = np.zeros((self.lag + 1, d), dtype=np.float32)
        # warm-up Welford of log F, float32 (it only sets a spread): mean and M2 per
        # pair, and one count (every pair is tested each time)
        self._wf = np.zeros((2, d, d), dtype=np.float32)
        self._wf_n = 0
        # Sequential decoupling test per baseline edge: the CUSUM (armed) or the reverse
        # CUSUM (disarmed), mean square of e_r, level trackers of e_u and g, mean square
        # of e_u. float32: the statistics only cross a threshold of log(arl0) and track
        # mean squares.
        self._seq = np.zeros((5, 0), dtype=np.float32)
        # The edges as (effect, cause) rows and the regressor positions of their models
        # (derived from the baseline, not state); none until it is built.
        self._set_sequential_columns({"seq_effect": np.zeros(0), "seq_cause": np.zeros(0)})

    def _warmup_var(self) -> OnlineVAR:
        # No warm-up row ever leaves, so a growing window gives the sliding window's
        # statistics without its ring of ``warmup`` raw samples (128 KB for 8 sensors).
        return OnlineVAR(self.d, self.lag, forgetting=1.0)

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Parameters for the shared detector conformance suite (4 channels, short runs)."""
        return {"sensors": ["s0", "s1", "s2", "s3"], "lag": 2, "window": 100, "warmup": 400}

    def params(self) -> dict[str, Any]:
        return {
            "sensors": list(self.sensors),
            "lag": self.lag,
            "window": self.window,
            "warmup": self.warmup,
            "alpha_edge": self.alpha_edge,
            "alpha": self.alpha,
            "k_decouple": self.k_decouple,
            "power_z": self.power_z,
            "alpha_new": self.alpha_new,
            "k_new": self.k_new,
            "alpha_residual": self.alpha_residual,
            "z_normal": self.z_normal,
            "screen_every": self.screen_every,
            "test_every": self.test_every,
            "rotate": self.rotate,
            "conditional": self.conditional,
            "ridge": self.ridge,
            "arl0": self.arl0,
        }

    # -- introspection -------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Samples learned since the monitor started (rows with a hole are not counted)."""
        return self._t

    @property
    def warmed_up(self) -> bool:
        """Whether the baseline graph exists."""
        return self._base is not None

    def baseline_graph(self) -> list[dict[str, Any]]:
        """Baseline edges: cause, effect, strength (partial R^2), p-value, watched, tested.

        ``watched``: the short-window F test can see its decoupling; ``tested``: some
        decoupling test runs on it (``watched`` or the sequential test).
        """
        if self._base is None:
            return []
        b = self._base
        seq = self._seq_mask()
        out = []
        for i, j in zip(*np.nonzero(b["edge"]), strict=True):
            out.append(
                {
                    "cause": self.sensors[i],
                    "effect": self.sensors[j],
                    "strength": float(b["r2"][i, j]),
                    "p": float(b["p"][i, j]),
                    "watched": bool(b["watch"][i, j]),
                    "tested": bool(b["watch"][i, j] or seq[i, j]),
                }
            )
        return out

    def watched_pairs(self) -> int:
        """Number of baseline edges watched for decoupling."""
        return 0 if self._base is None else int(self._base["watch"].sum())

    # -- tests ------------------------------------------------------------------------------
    def _test(self, var: OnlineVAR, cause: np.ndarray, effect: np.ndarray) -> GrangerResult:
        if self.conditional:
            return conditional_granger(var, self.ridge)
        return pairwise_granger(var, cause, effect, self.ridge)

    def _build_baseline(self) -> None:
        assert self._long is not None
        long, d, p = self._long, self.d, self.lag
        c, e = all_pairs(d)
        res = self._test(long, c, e)
        F = np.zeros((d, d))
        pv = np.ones((d, d))
        R2 = np.zeros((d, d))
        F[c, e] = np.nan_to_num(res.f)
        pv[c, e] = np.nan_to_num(res.pvalues(), nan=1.0)
        R2[c, e] = np.nan_to_num(res.partial_r2)
        edge = pv < self.alpha_edge
        np.fill_diagonal(edge, False)
        df2_b = res.df2
        df2_s = self._short_df2(float(self.window))
        # Moment estimate of the noncentrality, scaled to the short window's rows.
        lam_b = np.maximum(p * F * (df2_b - 2.0) / df2_b - p, 0.0)
        lam_s = lam_b * self.window / max(long.n_obs, 1.0)
        mean_s, sd_s = self._log_f_moments(lam_s, df2_s)
        for a in (self.alpha_edge, self.alpha_new / self.n_pairs):
            _crit(a, float(p), df2_s)  # compute the critical values once, off the hot path
        bar = math.log(_crit(self.alpha, float(p), df2_s))
        watch = edge & (mean_s - self.power_z * sd_s >= bar)
        coef = long.fit()
        loc, scale = self._residual_scale(long, coef)
        nonedge = ~edge
        np.fill_diagonal(nonedge, False)
        centre = long.shift
        self._base = _compact_base(
            {
                "p": pv,
                "r2": R2,
                "edge": edge,
                "watch": watch,
                "mean_s": mean_s,
                "sd_s": sd_s,
                "centre": centre,
                # the VAR in centred form, as the sequential models (see _centred)
                "coef": coef[1:].astype(np.float32),
                # its intercepts absolute, float64: d of them, and one add less per sample
                "coef_c": coef[0] + np.tile(centre, p) @ coef[1:],
                "res_loc": loc,
                "res_scale": scale,
                "nonedge": np.flatnonzero(nonedge.ravel()),
            }
        )
        if self.arl0 is not None:
            # Sequentially test an edge only if its baseline contribution is known to
            # within 1 / (2 power_z) of its size (t statistic sqrt(lam_b)): the test
            # decides between "contribution as at baseline" and "none", so half the
            # contribution must lie power_z standard errors from the estimate.
            seq_edge = edge & (lam_b >= (2.0 * self.power_z) ** 2)
            fits = self._fit_sequential(long, seq_edge)
            self._base.update(self._centre_sequential(fits, centre))
            self._set_sequential_columns(self._base)
            self._seq = np.zeros((5, self._base["seq_cause"].size), dtype=np.float32)
            self._seq[1] = self._restricted_of_edges(self._base["seq_s2r"])
            self._seq[4] = self._base["seq_s2u"]
        self._long = None  # the warm-up memory is no longer needed
        self._wf = np.zeros((2, 0, 0), dtype=np.float32)  # nor is the warm-up spread of log F

    def _residual_scale(self, long: OnlineVAR, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Robust centre and scale of the baseline VAR's one-step residuals, per sensor.

        The warm-up keeps no raw samples, so the median and MAD (times 1.4826) come
        from the residuals over the short window, the last ``window`` rows of the
        warm-up. A MAD of ``window`` residuals can come out ~10 % low by chance, which
        would multiply the residual check's false alarms in the far tail, so the scale
        is never below the residuals' root mean square over the whole warm-up (exact
        from the statistics; outliers can only inflate it, which makes the check less
        sensitive, never noisier). On the plant simulator (``bench/granger_plant.py``)
        this gave the detections of the former median/MAD over the whole warm-up, and
        fewer false residual findings (6 and 0 instead of 7 and 1).
        """
        Z, Y = self._short.design()
        resid = Y - Z @ coef
        if len(resid):
            loc = np.median(resid, axis=0)
            mad = 1.4826 * np.median(np.abs(resid - loc), axis=0)
        else:  # every row of the short window had a hole: the RMS alone
            loc = mad = np.zeros(self.d)
        z = long.regressor_index()
        G = long.gram()
        ys = np.arange(1, 1 + self.d)
        Gzz, Gzy = G[np.ix_(z, z)], G[np.ix_(z, ys)]
        B = np.linalg.lstsq(Gzz, Gzy, rcond=None)[0]
        rss = np.diag(G[np.ix_(ys, ys)]) - np.einsum("ij,ij->j", B, Gzy)
        rms = np.sqrt(np.maximum(rss, 0.0) / max(long.n_obs - len(z), 1.0))
        scale = np.maximum(mad, rms)
        level = np.abs(Y).mean(axis=0) if len(Y) else np.zeros(self.d)
        scale = np.maximum(scale, 1e-12 * np.maximum(level, 1.0))
        return loc, scale

    def _positions(self, centre: np.ndarray) -> np.ndarray:
        """The baseline centre of each regressor position (0 for the intercept)."""
        return np.concatenate([[0.0], np.tile(centre, self.lag)])

    def _set_sequential_columns(self, base: dict[str, np.ndarray]) -> None:
        """What the hot path needs to gather each model's regressors (derived, not
        state). The edges are kept once, as ``(effect, cause)`` rows whose columns are
        the baseline's ``seq_effect`` and ``seq_cause``: pairwise, they gather each
        edge's lags, and its effect is its restricted model; conditional, positions
        in the lagged deviations."""
        nodes = np.stack([base["seq_effect"], base["seq_cause"]], axis=1).astype(np.int16)
        base["seq_effect"], base["seq_cause"] = nodes[:, 0], nodes[:, 1]
        self._seq_nodes = nodes
        iu, ir = self._sequential_columns(nodes[:, 1], nodes[:, 0])
        self._seq_shapes = {
            "seq_bu": (len(iu), iu.shape[1] - 1),
            "seq_br": (len(ir), ir.shape[1] - 1),
            "seq_cu": (len(iu),),
            "seq_cr": (len(ir),),
            "seq_s2u": (len(iu),),
            "seq_s2r": (len(ir),),
        }
        if self.conditional:
            self._seq_iu, self._seq_ir = iu[:, 1:] - 1, ir[:, 1:] - 1
        else:
            self._seq_iu = self._seq_ir = np.zeros((0, 0), dtype=np.int16)

    def _sequential_regressors(self, dev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regressors of every unrestricted and restricted model, from the lagged
        deviations ``dev`` (``[y_t, ..., y_{t-p+1}]`` minus the centre)."""
        if self.conditional:
            return dev[self._seq_iu], dev[self._seq_ir]
        by_sensor = dev.reshape(self.lag, self.d).T  # [s, l]: sensor s, l + 1 samples back
        own_and_cause = by_sensor[self._seq_nodes]  # (E, 2, p): the effect's, the cause's
        return own_and_cause.reshape(len(own_and_cause), -1), by_sensor

    def _restricted_of_edges(self, per_model: np.ndarray) -> np.ndarray:
        """Each edge's value of a per-restricted-model array (see
        :meth:`_restricted_targets`)."""
        if self.conditional:
            return per_model
        assert self._base is not None
        return per_model[self._base["seq_effect"]]

    def _centre_sequential(
        self, fits: dict[str, np.ndarray], centre: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Sequential models in centred form (:func:`_centred`) around the baseline
        ``centre``, stored compactly."""
        cause, effect = fits["seq_cause"], fits["seq_effect"]
        iu, ir = self._sequential_columns(cause, effect)
        positions = self._positions(centre)
        targets = self._restricted_targets(effect)
        unrestricted = _centred(fits.pop("seq_bu"), iu, positions, centre[effect])
        restricted = _centred(fits.pop("seq_br"), ir, positions, centre[targets])
        fits.update(
            seq_bu=unrestricted["b"],
            seq_cu=unrestricted["c"],
            seq_br=restricted["b"],
            seq_cr=restricted["c"],
        )
        return _compact_base(fits)

    def _restricted_targets(self, effect: np.ndarray) -> np.ndarray:
        """Target of each restricted model: pairwise, one per sensor (``i -> j``'s
        restricted model is ``j`` on its own lags, whatever ``i``: the edges into ``j``
        share it); conditional, one per edge (all lags but the cause's)."""
        return effect.copy() if self.conditional else np.arange(self.d)

    def _sequential_columns(
        self, cause: np.ndarray, effect: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Regressor positions of the unrestricted models (one per edge) and of the
        restricted ones (see :meth:`_restricted_targets`), int16.

        Positions index ``[1, y_{t-1}, ..., y_{t-p}]`` (0 is the intercept); the pairwise
        unrestricted model of ``i -> j`` has the effect's and the cause's lags, the
        restricted one the effect's only (conditional: every lag, and all but the cause's).
        """
        d, p = self.d, self.lag

        def lags(s: int) -> list[int]:
            return [1 + lag * d + s for lag in range(p)]

        u_rows, r_rows = [], []
        for i, j in zip(cause.tolist(), effect.tolist(), strict=True):
            if self.conditional:
                u = [c for c in range(1, 1 + d * p)]
                r_rows.append([0, *(c for c in u if c not in lags(i))])
            else:
                u = lags(j) + lags(i)
            u_rows.append([0, *u])
        if not self.conditional:
            r_rows = [[0, *lags(j)] for j in range(d)]
        width_u = 1 + (d * p if self.conditional else 2 * p)
        width_r = 1 + (d * p - p if self.conditional else p)
        iu = np.array(u_rows, dtype=np.int16).reshape(len(u_rows), width_u)
        ir = np.array(r_rows, dtype=np.int16).reshape(len(r_rows), width_r)
        return iu, ir

    def _fit_sequential(self, var: OnlineVAR, edge: np.ndarray) -> dict[str, Any]:
        """Baseline models of the sequential decoupling test, one pair per edge.

        For edge ``i -> j`` the unrestricted model predicts ``y_j`` from the regressors
        of its Granger test (pairwise: ``1``, own lags, cause lags; conditional: all
        lags) and the restricted one from the same without the cause's lags. Both are
        least-squares fits over the warm-up, solved from its statistics ``G`` (the
        normal equations of the centred rows), and stored as coefficients of the
        regressor positions of :meth:`_sequential_columns`, with their residual
        variances. Pairwise, the edges into one effect share its restricted model.

        Parameters
        ----------
        var : OnlineVAR
            The warm-up's statistics.
        edge : ndarray of bool, shape (d, d)
            Edges to test.

        Returns
        -------
        dict
            ``seq_cause``, ``seq_effect`` (int, per edge), ``seq_bu``, ``seq_br``
            (coefficients, shapes ``(E, width_u)`` and ``(R, width_r)``, ``R``
            restricted models), ``seq_s2u``, ``seq_s2r`` (residual variances).
        """
        d = self.d
        cause, effect = np.nonzero(edge)
        iu, ir = self._sequential_columns(cause, effect)
        G, n, shift = var.gram(), var.n_obs, var.shift
        lagged_shift = np.concatenate([[0.0], np.tile(shift, self.lag)])
        fits = []
        for cols, targets in ((iu, effect), (ir, self._restricted_targets(effect))):
            coef = np.zeros(cols.shape)
            s2 = np.ones(cols.shape[0])
            for k, j in enumerate(targets.tolist()):
                # A regressor position r >= 1 is row r + d of G ([1, y_t, y_{t-1}, ...]).
                g = np.where(cols[k] == 0, 0, cols[k] + d)
                A, b = G[np.ix_(g, g)], G[g, 1 + j]
                beta = np.linalg.lstsq(A, b, rcond=None)[0]
                rss = float(G[1 + j, 1 + j] - beta @ b)
                # Centred fit -> raw intercept: c + s_target - sum(beta * s_lagged).
                beta[0] += shift[j] - beta[1:] @ lagged_shift[cols[k, 1:]]
                coef[k] = beta
                s2[k] = max(rss / max(n - cols.shape[1], 1.0), 1e-300)
            fits.append((coef, s2))
        (bu, s2u), (br, s2r) = fits
        return {
            "seq_cause": cause,
            "seq_effect": effect,
            "seq_bu": bu,
            "seq_br": br,
            "seq_s2u": s2u,
            "seq_s2r": s2r,
        }

    def _log_f_moments(self, lam: np.ndarray, df2: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of ``log F`` in the short window if nothing changes, per pair.

        The theoretical variance (delta method) has a numerator term
        ``2 (p + 2 lam) / (p + lam)^2`` and a denominator term ``2 / df2``; it misses the
        sampling noise of the cause's power within a short window, which dominates for
        slow causes. So the variance actually observed over the warm-up's short windows
        (inflated by ``_EMPIRICAL_INFLATE`` for its few independent windows) is used
        when it is larger.
        """
        p = float(self.lag)
        mean = np.log((p + lam) / p * df2 / (df2 - 2.0))
        var = 2.0 * (p + 2.0 * lam) / (p + lam) ** 2 + 2.0 / df2
        n = self._wf_n
        emp = self._wf[1] / (n - 1) if n > 1 else np.zeros_like(lam)
        var = np.maximum(var, _EMPIRICAL_INFLATE**2 * emp)
        return mean, np.sqrt(var)

    def _spread_due(self, t: int) -> bool:
        """Whether the warm-up learns the spread of log F at its ``t``-th sample."""
        return t >= self.window + self.lag and t % self.screen_every == 0

    def _structure_due(self, t: int) -> bool:
        """Whether the ``t``-th sample is a test point of the structural checks."""
        return self._base is not None and (t - self.warmup) % self.screen_every == 0

    def _learn_spread(self) -> None:
        """Warm-up: accumulate mean and variance of the short-window ``log F`` (Welford)."""
        c, e = all_pairs(self.d)
        res = self._test(self._short, c, e)
        _welford_log_f(self._wf[None], np.array([self._wf_n + 1]), res.f[None], c, e)
        self._wf_n += 1

    def _short_df2(self, n: float) -> float:
        return n - (self.d * self.lag + 1 if self.conditional else 2 * self.lag + 1)

    # -- residual check ------------------------------------------------------------------
    def _lagged_deviations(self) -> np.ndarray | None:
        """``[y_t, ..., y_{t-p+1}]`` minus the baseline centre: what the centred models
        of the next sample apply their slopes to (``None`` if a lag is missing)."""
        assert self._base is not None
        return self._short.last_deviations(self._base["centre"])

    def _residual_z(self, y: np.ndarray, dev: np.ndarray | None = None) -> np.ndarray:
        """Robust z of the one-step residual of each sensor (0 where unknown)."""
        if self._base is None:
            return np.zeros(self.d)
        if dev is None:
            dev = self._lagged_deviations()
        if dev is None:
            return np.zeros(self.d)
        pred = self._base["coef_c"] + dev @ self._base["coef"]
        z = (y - pred - self._base["res_loc"]) / self._base["res_scale"]
        return np.where(np.isfinite(z), z, 0.0)

    def _check_residual(self, z: np.ndarray) -> list[CausalityFinding]:
        assert self._base is not None
        az = np.abs(z)
        self._zhist[self._t % (self.lag + 1)] = az  # ring of the last p + 1 |z|
        calm = az < self.z_normal
        self._res_calm = np.where(calm, np.minimum(self._res_calm + 1, self.window), 0)
        # Re-arm only after a calm stretch as long as the short window, so one noisy
        # episode is one finding, not one per burst.
        self._res_armed |= self._res_calm >= self.window
        if calm.all():
            return []  # the common case: skip the tail function
        return self._residual_findings(z)

    def _residual_findings(self, z: np.ndarray) -> list[CausalityFinding]:
        """Findings of sensors whose residual z is extreme while their drivers are
        calm (the calm counters and the ring of ``|z|`` already hold this sample)."""
        assert self._base is not None
        out: list[CausalityFinding] = []
        tail = normal_two_sided_tail(z)
        for j in np.flatnonzero((tail < self.alpha_residual) & self._res_armed):
            drivers = np.flatnonzero(self._base["edge"][:, j])
            if not drivers.size:
                continue  # no causes to contradict: a plain outlier, the sensor detectors' job
            if self._zhist[:, drivers].max() >= self.z_normal:
                continue  # a driver moved too: the effect may be honest
            self._res_armed[j] = False
            out.append(
                CausalityFinding(
                    kind="residual",
                    cause=",".join(self.sensors[i] for i in drivers),
                    effect=self.sensors[j],
                    strength_before=float(self._base["res_scale"][j]),
                    strength_now=float(abs(z[j]) * self._base["res_scale"][j]),
                    p_before=math.nan,
                    p_now=float(tail[j]),
                    score=float(tail_to_score(tail[j])),
                    ts_index=self._t,  # checked before the sample is counted
                )
            )
        return out

    # -- sequential decoupling test ------------------------------------------------------
    def _seq_mask(self) -> np.ndarray:
        """``(d, d)`` bool: edges under the sequential test."""
        mask = np.zeros((self.d, self.d), dtype=bool)
        if self._base is not None and "seq_cause" in self._base:
            mask[self._base["seq_cause"], self._base["seq_effect"]] = True
        return mask

    def _restart_cusum(self, i: int, j: int) -> None:
        """Edge ``i -> j`` was disarmed by the window test: if it is under the
        sequential test, its reverse CUSUM starts from 0 (they share a row)."""
        if self._base is not None and "seq_cause" in self._base:
            b = self._base
            self._seq[0, (b["seq_cause"] == i) & (b["seq_effect"] == j)] = 0.0

    def _check_sequential(self, y: np.ndarray, dev: np.ndarray) -> list[CausalityFinding]:
        """One CUSUM step per baseline edge; a ``decoupling`` finding when one crosses.

        See "Sequential decoupling test" in the module docstring.
        """
        b = self._base
        if b is None or self.arl0 is None or "seq_bu" not in b or not b["seq_cause"].size:
            return []
        cause, effect = b["seq_cause"], b["seq_effect"]
        # float32 models (see _centred) of deviations from the baseline centre
        x_u, x_r = self._sequential_regressors(dev)
        pred_u = b["seq_cu"] + np.einsum("ij,ij->i", b["seq_bu"], x_u)
        pred_r = self._restricted_of_edges(b["seq_cr"] + np.einsum("ij,ij->i", b["seq_br"], x_r))
        yj = (y - b["centre"])[effect]
        seq = self._seq.astype(np.float64)  # float32 at rest, written back below
        armed = self._dec_armed[cause, effect]
        s2r = self._restricted_of_edges(b["seq_s2r"])
        _sequential_step(seq, armed, yj, pred_u, pred_r, b["seq_s2u"], s2r, self.window)
        cusum = seq[0]
        h = math.log(self.arl0)
        back = ~armed & (cusum >= h)  # the edge is back: re-arm
        if back.any():
            self._dec_armed[cause[back], effect[back]] = True
            cusum[back] = 0.0
        out: list[CausalityFinding] = []
        crossed = armed & (cusum >= h)
        for k in np.flatnonzero(crossed) if crossed.any() else ():
            out.append(self._sequential_decoupling(int(cause[k]), int(effect[k]), cusum[k]))
            cusum[k] = 0.0
        self._seq[:] = seq
        return out

    def _sequential_decoupling(self, i: int, j: int, statistic: float) -> CausalityFinding:
        """Edge ``i -> j``'s CUSUM crossed at ``statistic``: disarm it (the caller
        restarts the statistic) and report it with the short window's test."""
        assert self._base is not None
        b = self._base
        self._dec_armed[i, j] = False
        self._dec_count[i, j] = 0
        tail = math.exp(-float(statistic))
        res = self._test(self._short, np.array([i]), np.array([j]))
        if self.conditional:
            sel = (res.cause == i) & (res.effect == j)
            f_now, r2_now = float(res.f[sel][0]), float(res.partial_r2[sel][0])
        else:
            f_now, r2_now = float(res.f[0]), float(res.partial_r2[0])
        f_now = 0.0 if not math.isfinite(f_now) else f_now
        p_now = float(f_sf(f_now, float(self.lag), res.df2)[()]) if res.df2 > 0 else 1.0
        return CausalityFinding(
            kind="decoupling",
            cause=self.sensors[i],
            effect=self.sensors[j],
            strength_before=float(b["r2"][i, j]),
            strength_now=r2_now if math.isfinite(r2_now) else 0.0,
            p_before=float(b["p"][i, j]),
            p_now=p_now,
            score=float(tail_to_score(np.asarray(tail))),
            ts_index=self._t,  # checked before the sample is counted
        )

    # -- structural checks ---------------------------------------------------------------
    def _pairs_to_test(self, full: bool) -> np.ndarray:
        """Flat indices ``i * d + j`` of the pairs to test at this point."""
        assert self._base is not None
        d = self.d
        if full or self.conditional:
            mask = ~np.eye(d, dtype=bool)
            return np.flatnonzero(mask.ravel())
        b = self._base
        mask = b["watch"] | ((self._new_count > 0) | ~self._new_armed) & ~b["edge"]
        flat = mask.ravel().copy()
        nonedge = b["nonedge"]
        if nonedge.size and self.rotate > 0:
            take = (self._rot + np.arange(min(self.rotate, nonedge.size))) % nonedge.size
            flat[nonedge[take]] = True
            self._rot = int((self._rot + take.size) % nonedge.size)
        np.fill_diagonal(flat.reshape(d, d), False)
        return np.flatnonzero(flat)

    def _check_structure(
        self, full: bool, tested: PairTests | None = None
    ) -> list[CausalityFinding]:
        assert self._base is not None
        b, d, p = self._base, self.d, float(self.lag)
        n = self._short.n_obs
        if n < 0.5 * self.window:
            return []  # too many missing rows for a meaningful test
        flat = self._pairs_to_test(full) if tested is None else tested.flat
        if flat.size == 0:
            return []
        cause, effect = flat // d, flat % d
        if tested is not None and tested.f is not None and tested.r2 is not None:
            # pairwise, tested with other monitors' windows in one factorisation
            res = GrangerResult(cause, effect, tested.f, p, n - 2 * p - 1, tested.r2)
        else:
            res = self._test(self._short, cause, effect)
        if self.conditional:
            F = np.full((d, d), np.nan)
            F[res.cause, res.effect] = res.f
            R2 = np.full((d, d), np.nan)
            R2[res.cause, res.effect] = res.partial_r2
            f, r2 = F[cause, effect], R2[cause, effect]
        else:
            f, r2 = res.f, res.partial_r2
        df2 = res.df2
        f = np.nan_to_num(f, nan=0.0)
        f_dec = _crit(self.alpha, p, df2)
        f_edge = _crit(self.alpha_edge, p, df2)
        f_new = _crit(self.alpha_new / self.n_pairs, p, df2)
        out: list[CausalityFinding] = []
        # The (d, d) arrays are read and written at the pairs' flat indices: this runs
        # per monitor at every test point, and a 1-D index costs half a 2-D one.
        # (Writes go through ``.flat``, which writes through whatever the layout.)
        watch = _at(b["watch"], flat)
        fresh = ~_at(b["edge"], flat)

        # decoupling: consecutive non-significance of a watched edge
        low = f < f_dec
        dc = self._dec_count
        # (counts stop at k: only reaching k matters, and they stay small integers)
        watched = flat[watch]
        dc.flat[watched] = np.where(
            low[watch], np.minimum(_at(dc, watched) + 1, self.k_decouple), 0
        )
        # Edges under the sequential test re-arm through its reverse CUSUM only: a
        # window that is still significant midway through a decoupling must not re-arm
        # them (their level trackers would learn the fault).
        rearm = watch & (f >= f_edge) & ~_at(self._seq_mask(), flat)
        self._dec_armed.flat[flat[rearm]] = True
        fire = watch & (_at(dc, flat) >= self.k_decouple) & _at(self._dec_armed, flat)
        for k in np.flatnonzero(fire):
            i, j = int(cause[k]), int(effect[k])
            self._dec_armed[i, j] = False
            self._restart_cusum(i, j)
            dc[i, j] = 0
            mean, sd = float(b["mean_s"][i, j]), float(b["sd_s"][i, j])
            z = (math.log(max(f[k], 1e-300)) - mean) / sd
            tail = float(normal_lower_tail(z))
            out.append(self._finding("decoupling", i, j, r2[k], f[k], df2, tail))

        # new link: persistent Bonferroni-significant pair absent from the baseline
        high = f > f_new
        nc = self._new_count
        unseen = flat[fresh]
        nc.flat[unseen] = np.where(high[fresh], np.minimum(_at(nc, unseen) + 1, self.k_new), 0)
        rearm = fresh & (f < f_dec)
        self._new_armed.flat[flat[rearm]] = True
        fire = fresh & (_at(nc, flat) >= self.k_new) & _at(self._new_armed, flat)
        for k in np.flatnonzero(fire):
            i, j = int(cause[k]), int(effect[k])
            self._new_armed[i, j] = False
            nc[i, j] = 0
            p_now = float(f_sf(f[k], p, df2)[()])
            tail = min(1.0, p_now * self.n_pairs)
            out.append(self._finding("new_link", i, j, r2[k], f[k], df2, tail))
        return out

    def _finding(
        self, kind: str, i: int, j: int, r2: float, f: float, df2: float, tail: float
    ) -> CausalityFinding:
        assert self._base is not None
        return CausalityFinding(
            kind=kind,
            cause=self.sensors[i],
            effect=self.sensors[j],
            strength_before=float(self._base["r2"][i, j]),
            strength_now=float(r2),
            p_before=float(self._base["p"][i, j]),
            p_now=float(f_sf(f, float(self.lag), df2)[()]),
            score=float(tail_to_score(np.asarray(tail))),
            ts_index=self._t - 1,
        )

    # -- streaming -------------------------------------------------------------------------
    def update(self, y: np.ndarray) -> list[CausalityFinding]:
        """Learn one sample of the device and return the findings it triggers.

        A sample with any non-finite value is skipped (no learning, no findings).
        """
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.d,):
            raise ValueError(f"expected {self.d} values, got shape {y.shape}")
        out: list[CausalityFinding] = []
        if not np.isfinite(y).all():
            # House contract (detectors.base): a row with a non-finite value is skipped
            # entirely, as if never seen; the lags splice across it (rare gaps only).
            return out
        self._learn_and_check(y, out)
        # The short window's cross-products are read every few samples and stale after
        # the next one: not worth keeping between samples (9 KB for 8 sensors, lag 3).
        self._short.release()
        return out

    def _learn_and_check(self, y: np.ndarray, out: list[CausalityFinding]) -> None:
        if self._base is not None:
            dev = self._lagged_deviations()
            out.extend(self._check_residual(self._residual_z(y, dev)))
            if dev is not None:
                out.extend(self._check_sequential(y, dev))
        self._learn_sample(y, out)

    def _learn_sample(self, y: np.ndarray, out: list[CausalityFinding]) -> None:
        """Move the windows on by ``y`` (after the per-sample checks)."""
        self._short.update(y)
        if self._long is not None:
            self._long.update(y)
        self._after_sample(out)

    def _after_sample(
        self,
        out: list[CausalityFinding],
        spread: bool = True,
        tested: PairTests | None = None,
    ) -> None:
        """A sample was added to the windows: count it; then the warm-up's steps (without
        ``spread``, the caller learned the spread of log F if due), or the structural
        test points that fall due (``tested``: their pairs, and their tests if done,
        when the caller chose them already)."""
        self._t += 1
        if self._base is None:
            if spread and self._spread_due(self._t):
                self._learn_spread()
            if self._t >= self.warmup:
                self._build_baseline()
            return
        if self._structure_due(self._t):
            out.extend(self._check_structure(full=self._full_test_due(self._t), tested=tested))

    def _full_test_due(self, t: int) -> bool:
        """Whether the test point at the ``t``-th sample tests every pair."""
        return (t - self.warmup) % self.test_every == 0

    def learn_one(self, x: Any) -> None:
        self.update(np.asarray(x, dtype=np.float64))

    def score_one(self, x: Any) -> float:
        """Residual score of ``x``: ``1 -`` the smallest two-sided tail over sensors."""
        z = self._residual_z(np.asarray(x, dtype=np.float64))
        return float(tail_to_score(normal_two_sided_tail(z)).max())

    def explain_one(self, x: Any) -> np.ndarray:
        """Shares of each sensor in the residual evidence (``z^2`` shares)."""
        z2 = self._residual_z(np.asarray(x, dtype=np.float64)) ** 2
        total = z2.sum()
        return z2 / total if total > 0 else np.full(self.d, 1.0 / self.d)

    # -- state ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        base = None
        if self._base is not None:
            cached = self._packed_base
            if cached is None or cached[0] is not self._base:
                cached = self._packed_base = (
                    self._base,
                    {k: pack(v) for k, v in self._base.items()},
                )
            base = cached[1]
        return {
            "t": self._t,
            "rot": self._rot,
            "short": self._short.get_state(),
            "long": None if self._long is None else self._long.get_state(),
            "base": base,
            "dec_count": pack(self._dec_count),
            "new_count": pack(self._new_count),
            "dec_armed": pack(self._dec_armed),
            "new_armed": pack(self._new_armed),
            "res_armed": pack(self._res_armed),
            "res_calm": pack(self._res_calm),
            "zhist": pack(self._zhist),
            "wf": pack(self._wf),
            "wf_n": self._wf_n,
            "seq": pack(self._seq),
            "seq_restricted": "per sensor",  # the layout of the restricted models
        }

    def _restore_base(self, base: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
        """The stored baseline, checked, with older layouts brought up to date.

        Before 2026-12-01 (``layout`` "per edge") the models were stored in raw form
        (intercept first, float64) and, pairwise, with one restricted model per edge;
        they are converted here around the short window's current centre (any centre
        gives the same models). Commit 21c4527 ("per effect") kept one restricted model
        per distinct effect; now there is one per sensor ("per sensor").
        """
        d, m = self.d, 1 + self.d * self.lag
        if "centre" not in base:
            base["centre"] = self._short.shift
            raw = base["coef"]
            if raw.shape != (m, d):
                raise ValueError("state 'coef' has the wrong shape")
            lags = np.tile(base["centre"], self.lag)
            base["coef"], base["coef_c"] = raw[1:], raw[0] + lags @ raw[1:]
        if base["centre"].shape != (d,):
            raise ValueError("state 'centre' has the wrong shape")
        if base["coef"].shape != (m - 1, d) or base["coef_c"].shape != (d,):
            raise ValueError("state 'coef' has the wrong shape")
        if "seq_cause" in base:
            cause, effect = base["seq_cause"], base["seq_effect"]
            if cause.shape != effect.shape or cause.ndim != 1:
                raise ValueError("sequential test edges are malformed")
            if not np.all((cause >= 0) & (cause < d) & (effect >= 0) & (effect < d)):
                raise ValueError("sequential test edges are malformed")
            if not self.conditional and layout != "per sensor":
                # one restricted model per edge, or per distinct effect: one per sensor
                effects, first = np.unique(effect, return_index=True)
                per_edge = layout == "per edge"
                keep = first if per_edge else np.arange(len(effects))
                # (the per-edge layout is raw: its intercepts are in seq_br)
                for name in [k for k in ("seq_br", "seq_cr", "seq_s2r") if k in base]:
                    if len(base[name]) != (cause.size if per_edge else effects.size):
                        raise ValueError(f"state {name!r} has the wrong shape")
                    per_sensor = np.zeros((d, *base[name].shape[1:]), dtype=base[name].dtype)
                    if name == "seq_s2r":
                        per_sensor[:] = 1.0  # sensors without an edge: never read
                    per_sensor[effects] = base[name][keep]
                    base[name] = per_sensor
            if "seq_cu" not in base:
                base = self._centre_sequential(base, base["centre"])
            self._set_sequential_columns(base)
            for key, shape in self._seq_shapes.items():
                if base[key].shape != shape:
                    raise ValueError(f"state {key!r} has the wrong shape")
        return _compact_base(base)

    def _set_state(self, state: dict[str, Any]) -> None:
        def arr(key: str, shape: tuple[int, ...]) -> np.ndarray:
            a = unpack(state[key])
            if a is None or a.shape != shape:
                raise ValueError(f"state {key!r} has the wrong shape")
            return a

        d = self.d
        self._t = int(state["t"])
        self._rot = int(state["rot"])
        self._short.set_state(state["short"])
        if state["long"] is None:
            self._long = None
        else:
            self._long = self._warmup_var()
            self._long.set_state(state["long"])
        if state["base"] is None:
            self._base = None
        else:
            base = {k: unpack(v) for k, v in state["base"].items()}
            if any(v is None for v in base.values()):
                raise ValueError("baseline arrays missing")
            layout = state.get(
                "seq_restricted", "per effect" if "seq_r_shared" in state else "per edge"
            )
            self._base = self._restore_base(
                {k: v for k, v in base.items() if v is not None}, layout=str(layout)
            )
        self._dec_count = np.minimum(arr("dec_count", (d, d)), self.k_decouple).astype(np.int16)
        self._new_count = np.minimum(arr("new_count", (d, d)), self.k_new).astype(np.int16)
        self._dec_armed = arr("dec_armed", (d, d))
        self._new_armed = arr("new_armed", (d, d))
        self._res_armed = arr("res_armed", (d,))
        self._res_calm = np.minimum(arr("res_calm", (d,)), self.window).astype(np.int32)
        self._zhist = arr("zhist", (self.lag + 1, d)).astype(np.float32)
        wf = unpack(state["wf"])
        if wf is not None and "wf_n" not in state and wf.shape[0] == 3:
            # before 2026-12-01: a count per pair (all equal) as a first row
            state = {**state, "wf": pack(wf[1:]), "wf_n": int(wf[0].max(initial=0.0))}
        self._wf = arr("wf", (2, d, d) if self._base is None else (2, 0, 0)).astype(np.float32)
        self._wf_n = int(state.get("wf_n", 0))
        n_seq = 0 if self._base is None else int(self._base.get("seq_cause", np.zeros(0)).size)
        stored = unpack(state["seq"]) if "seq" in state else None
        if stored is not None and stored.shape == (6, n_seq):
            # before 2026-12-01: the CUSUM and the reverse CUSUM in two rows (one is 0)
            up, down, rest = stored[0], stored[1], stored[2:]
            armed = np.zeros(0, dtype=bool)
            if self._base is not None and n_seq:
                armed = self._dec_armed[self._base["seq_cause"], self._base["seq_effect"]]
            stored = np.vstack([np.where(armed, up, down), rest])
        if stored is None:
            stored = np.zeros((5, n_seq))
        if stored.shape != (5, n_seq):
            raise ValueError("state 'seq' has the wrong shape")
        self._seq = stored.astype(np.float32)

    def state_size(self) -> int:
        arrays = [
            self._dec_count,
            self._new_count,
            self._dec_armed,
            self._new_armed,
            self._res_armed,
            self._res_calm,
            self._zhist,
            self._wf,
            self._seq,
            # derived from the edges, yet held per device all the same
            # derived (the edges themselves are the baseline's seq_cause and seq_effect,
            # views into one array)
            self._seq_iu,
            self._seq_ir,
        ]
        size = self._short.state_size() + sum(a.nbytes for a in arrays)
        if self._long is not None:
            size += self._long.state_size()
        if self._base is not None:
            size += sum(v.nbytes for v in self._base.values())
        return int(size)
