"""Chi-square tail probabilities without scipy: the regularised incomplete gamma function.

``chi2_sf(x, k) = Q(k / 2, x / 2)`` where ``Q(a, x) = Γ(a, x) / Γ(a)`` is the
regularised upper incomplete gamma function. ``Q`` is evaluated as in Numerical Recipes
(Press et al., 3rd ed., §6.2, ``gammp``/``gammq``): the power series of ``P = 1 - Q``
for ``x < a + 1``, where it converges fast, and Lentz's continued fraction for ``Q``
otherwise, so far tails keep full relative precision. Relative error is below ``1e-12``
against :func:`scipy.special.gammaincc` over the ranges used here (tested).

Examples
--------
>>> round(chi2_sf(3.841458820694124, 1), 6)
0.05
>>> chi2_sf(0.0, 4)
1.0
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-16
_FPMIN = 1e-300
_MAX_ITER = 10_000


def _p_series(a: float, x: float) -> float:
    # P(a, x) = e^-x x^a / Γ(a+1) * Σ x^n / ((a+1)...(a+n))
    ap = a
    term = 1.0 / a
    total = term
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _q_contfrac(a: float, x: float) -> float:
    # Modified Lentz evaluation of the continued fraction for Q(a, x), x >= a + 1.
    b = x + 1.0 - a
    c = 1.0 / _FPMIN
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _FPMIN:
            d = _FPMIN
        c = b + an / c
        if abs(c) < _FPMIN:
            c = _FPMIN
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gammaincc(a: float, x: float) -> float:
    """Regularised upper incomplete gamma ``Q(a, x)`` for ``a > 0``, ``x >= 0``.

    Examples
    --------
    >>> round(gammaincc(1.0, 2.0), 12) == round(math.exp(-2.0), 12)
    True
    """
    if a <= 0.0:
        raise ValueError("a must be positive")
    if not x > 0.0:  # also catches nan: no evidence
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _p_series(a, x))
    return min(1.0, _q_contfrac(a, x))


def chi2_sf(x: float, k: float) -> float:
    """``P(χ²_k >= x)``, the upper tail of a chi-square with ``k > 0`` degrees of freedom."""
    return gammaincc(0.5 * float(k), 0.5 * float(x))


def chi2_sf_many(x: np.ndarray, k: float) -> np.ndarray:
    """:func:`chi2_sf` over an array (a Python loop: each call costs about a microsecond)."""
    flat = np.asarray(x, dtype=np.float64).ravel()
    out = np.fromiter((chi2_sf(v, k) for v in flat), dtype=np.float64, count=flat.size)
    return out.reshape(np.shape(x))
