"""Maximum-likelihood fit of a generalised Pareto distribution by Grimshaw's trick.

The GPD of excesses ``y > 0`` has survival ``(1 + gamma y / sigma)^(-1/gamma)``
(``exp(-y / sigma)`` at ``gamma = 0``). Grimshaw reduces the two-parameter likelihood
to one equation in ``x = gamma / sigma``: at a maximum, ``u(x) v(x) = 1`` with
``u(x) = mean(1 / (1 + x y))`` and ``v(x) = 1 + mean(log(1 + x y))``, and then
``gamma = v(x) - 1``, ``sigma = gamma / x``. Its roots lie in ``(-1 / y_max, 0)`` and
``(0, 2 (ybar - y_min) / y_min^2)``; we bracket them on a grid, refine by bisection,
and keep the candidate of highest likelihood (``x = 0``, the exponential, is always one).

References: S. D. Grimshaw, "Computing Maximum Likelihood Estimates for the Generalized
Pareto Distribution", Technometrics 35(2), 1993; as used by Siffer et al., KDD 2017.
"""

from __future__ import annotations

import math

import numpy as np

_GRID = 12  # points per grid half (linear-in-log near both ends of each interval)
_ITER = 30  # Illinois steps: superlinear, so far more than enough for double precision
# Grid shapes, made once: a refit (every few peaks, per key) spent an eighth of its time
# rebuilding them. ``_ENDS`` runs 1e-8 .. 1 geometrically; ``_UNIT`` is 0 .. 1 linearly,
# the exponent of a geometric grid between any two ends.
_ENDS = np.geomspace(1e-8, 1.0, _GRID)
_UNIT = np.linspace(0.0, 1.0, 2 * _GRID)


def gpd_log_likelihood(y: np.ndarray, gamma: float, sigma: float) -> float:
    """Log-likelihood of excesses ``y`` under GPD(``gamma``, ``sigma``); ``-inf`` if invalid."""
    if sigma <= 0 or not np.isfinite(sigma) or not np.isfinite(gamma):
        return -np.inf
    if abs(gamma) < 1e-12:
        return float(-len(y) * np.log(sigma) - y.sum() / sigma)
    s = 1.0 + gamma * y / sigma
    if np.any(s <= 0):
        return -np.inf
    return float(-len(y) * np.log(sigma) - (1.0 + 1.0 / gamma) * np.log(s).sum())


def _w(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    s = 1.0 + np.multiply.outer(x, y)
    # Sums over n rather than np.mean: the same arithmetic, less overhead per call (a
    # refit evaluates this once, on its whole grid; the brackets use _w_at).
    n = len(y)
    return (1.0 / s).sum(axis=1) / n * (1.0 + np.log(s).sum(axis=1) / n) - 1.0


def _roots(y: np.ndarray, grids: tuple[np.ndarray, ...]) -> np.ndarray:
    """Roots of ``u v - 1`` bracketed by sign changes on each of ``grids`` (the grid
    evaluated in one vectorised call), each refined by Illinois steps."""
    kept = [np.unique(g[np.isfinite(g)]) for g in grids]
    kept = [g for g in kept if len(g) >= 2]
    if not kept:
        return np.empty(0)
    points = np.concatenate(kept)
    w = _w(y, points)
    # Neighbours within one grid only: the last point of a grid and the first of the
    # next do not bracket anything.
    within = np.ones(len(points) - 1, dtype=bool)
    within[np.cumsum([len(g) for g in kept])[:-1] - 1] = False
    idx = np.flatnonzero((np.sign(w[:-1]) * np.sign(w[1:]) < 0) & within)
    if len(idx) == 0:
        return np.empty(0)
    return np.array(
        [
            _illinois(y, float(points[i]), float(points[i + 1]), float(w[i]), float(w[i + 1]))
            for i in idx
        ]
    )


def _w_at(y: np.ndarray, x: float) -> float:
    """:func:`_w` at one ``x`` (the same sums, without the outer product's overhead)."""
    s = 1.0 + x * y
    n = len(y)
    return float((1.0 / s).sum() / n * (1.0 + np.log(s).sum() / n) - 1.0)


def _illinois(y: np.ndarray, a: float, b: float, fa: float, fb: float) -> float:
    """The root of ``u v - 1`` in the bracket ``(a, b)`` by Illinois (modified regula
    falsi) steps: superlinear, and in plain floats, since a bracket is a scalar problem
    (a refit of SPOT's tail spends most of its time here)."""
    for _ in range(_ITER):
        c = b - fb * (b - a) / (fb - fa) if fb != fa else math.nan
        # Not strictly inside the bracket (or not finite: NaN compares false): bisect.
        if not (c - a) * (c - b) < 0.0:
            c = 0.5 * (a + b)
        fc = _w_at(y, c)
        if _sign(fc) == _sign(fb):
            fa = 0.5 * fa  # the sign did not change: halve the stale end's value
        else:
            a, fa = b, fb
        b, fb = c, fc
        if abs(fb) < 1e-14:
            break
    return b


def _sign(v: float) -> float:
    """``np.sign`` of a float: NaN for NaN."""
    return 1.0 if v > 0.0 else -1.0 if v < 0.0 else 0.0 if v == 0.0 else math.nan


def fit_gpd_moments(y: np.ndarray) -> tuple[float, float]:
    """Method-of-moments GPD fit ``(gamma, sigma)`` (needs ``gamma < 1/2``)."""
    m = float(np.mean(y))
    v = float(np.var(y))
    if v <= 0 or m <= 0:
        return 0.0, max(m, 0.0)
    r = m * m / v
    return 0.5 * (1.0 - r), 0.5 * m * (r + 1.0)


def fit_gpd(y: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(gamma, sigma)`` of the excesses ``y > 0``.

    Falls back to the method of moments when there are fewer than 3 distinct
    excesses or no candidate has a finite likelihood. When the likelihood has no
    stationary point (a small sample of a bounded tail, whose likelihood grows towards
    ``gamma = -1``), the exponential ``(0, mean)`` is returned.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).exponential(2.0, 5000)  # GPD(0, 2)
    >>> gamma, sigma = fit_gpd(y)
    >>> bool(abs(gamma) < 0.05 and abs(sigma - 2.0) < 0.15)
    True
    """
    y = np.asarray(y, dtype=np.float64)
    y = y[np.isfinite(y) & (y > 0)]
    if len(y) < 3 or np.ptp(y) <= 0:
        return fit_gpd_moments(y) if len(y) else (0.0, 0.0)
    ym, yM, ybar = float(y.min()), float(y.max()), float(y.mean())
    # Grimshaw's brackets: x in (-1 / y_max, 0) or (0, 2 (ybar - y_min) / y_min^2); grids
    # dense near both ends of each (the roots sit at |x| ~ |gamma| / sigma, any scale).
    left = -(np.concatenate([1.0 - _ENDS, _ENDS]) / yM)
    left = left[left > -1.0 / yM]
    lo, hi = 1e-8 / ybar, min(2.0 * (ybar - ym) / (ym * ym), 1e8 / ybar)
    right = lo * (hi / lo) ** _UNIT
    roots = _roots(y, (left, right))
    best = (0.0, ybar)
    best_ll = gpd_log_likelihood(y, *best)
    for x in roots:
        if x == 0:
            continue
        gamma = float(np.mean(np.log1p(x * y)))
        sigma = gamma / float(x)
        ll = gpd_log_likelihood(y, gamma, sigma)
        if ll > best_ll:
            best, best_ll = (gamma, sigma), ll
    if not np.isfinite(best_ll):
        return fit_gpd_moments(y)
    return best
