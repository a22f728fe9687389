"""Small helpers shared by detectors: input shaping, array packing, score mapping."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def as_vector(x: Any) -> tuple[np.ndarray, bool]:
    """``x`` as a 1-D float64 array, and whether it was a scalar."""
    if np.isscalar(x):
        return np.array([float(x)], dtype=np.float64), True  # type: ignore[arg-type]
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a scalar or a 1-D vector, got shape {arr.shape}")
    return arr, False


def as_matrix(X: Any) -> np.ndarray:
    """``X`` as a 2-D float64 array of rows (a 1-D input is one channel)."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {arr.shape}")
    return arr


def pack(arr: np.ndarray | None) -> dict[str, Any] | None:
    """A JSON-safe, exact and compact form of a numeric array (base64 of its bytes).

    Hot: a device's snapshot packs some forty arrays, so this avoids numpy's dtype
    string and the base64 module's wrappers (``tobytes`` is C order for any layout).
    """
    if arr is None:
        return None
    code = _DTYPE_CODES.get(arr.dtype)
    if code is None:
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"cannot pack dtype {arr.dtype}")
        code = arr.dtype.str  # a byte order unpack refuses: fails loudly there
    return {
        "dtype": code,
        "shape": list(arr.shape),
        "b64": binascii.b2a_base64(arr.tobytes(), newline=False).decode("ascii"),
    }


_ALLOWED_DTYPES = {
    "<f8",
    "<f4",
    "<f2",
    "<i8",
    "<i4",
    "<u8",
    "<u4",
    "|u1",
    "|i1",
    "|b1",
    "<i2",
    "<u2",
}
#: The packed code of each dtype unpack takes.
_DTYPE_CODES = {np.dtype(code): code for code in _ALLOWED_DTYPES}


def unpack(obj: dict[str, Any] | None) -> np.ndarray | None:
    """Inverse of :func:`pack`; validates dtype and size so bad snapshots fail loudly."""
    if obj is None:
        return None
    dtype = obj["dtype"]
    if dtype not in _ALLOWED_DTYPES:
        raise ValueError(f"unsupported packed dtype {dtype!r}")
    shape = tuple(int(s) for s in obj["shape"])
    raw = base64.b64decode(obj["b64"], validate=True)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise ValueError(f"packed array has {len(raw)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


_SQRT2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
# Chebyshev fit of erfc (Numerical Recipes, "erfcc"): relative error < 1.2e-7 everywhere,
# so far tails stay accurate, which SPOT thresholds on extreme levels depend on.
_ERFC_COEF = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function of ``x >= 0``, vectorised."""
    # Past 40 erfc underflows to 0 anyway; clipping avoids overflow warnings on inf.
    z = np.minimum(np.abs(np.asarray(x, dtype=np.float64)), 40.0)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.full_like(t, _ERFC_COEF[-1])
    for c in _ERFC_COEF[-2::-1]:
        poly = poly * t + c
    return t * np.exp(-z * z + poly)


def normal_two_sided_tail(z: np.ndarray) -> np.ndarray:
    """``P(|Z| >= |z|)`` for a standard normal ``Z`` (``nan`` maps to 1: no evidence)."""
    zz = np.asarray(z, dtype=np.float64)
    zz = np.where(np.isnan(zz), 0.0, zz)
    return erfc(zz / _SQRT2)


def normal_two_sided_surprise(z: np.ndarray) -> np.ndarray:
    """``-log10 P(|Z| >= |z|)``, exact in logs however far out ``z`` is (``nan`` maps to 0).

    :func:`normal_two_sided_tail` underflows past ``|z|`` of about 38 and its score
    ``1 - p`` rounds to 1 past about 8; this keeps the order of any two residuals, which
    a tail threshold fitted to the key's own history (SPOT) needs.
    """
    # |z| capped at 1e150 keeps u * u finite (an infinite residual stays the largest
    # finite surprise); nan propagates and is mapped to 0 by the last comparison.
    u = np.minimum(np.abs(np.asarray(z, dtype=np.float64)), 1e150) / _SQRT2
    t = 1.0 / (1.0 + 0.5 * u)
    poly = np.full_like(t, _ERFC_COEF[-1])
    for c in _ERFC_COEF[-2::-1]:
        poly = poly * t + c
    surprise = (u * u - np.log(t) - poly) / _LN10  # -log10 erfc(u), as in :func:`erfc`
    return np.where(surprise > 0.0, surprise, 0.0)


def surprise_to_score(surprise: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`score_to_surprise` (``1 - 10 ** -surprise``; rounds to 1 past 16).

    Negative surprises (a level below any tail) map to 0."""
    s = np.maximum(np.asarray(surprise, dtype=np.float64), 0.0)
    return 1.0 - np.power(10.0, -s)


def surprise_to_score_one(surprise: float) -> float:
    """:func:`surprise_to_score` of one float, in plain Python: a tenth of a numpy
    call's cost per reading, equal to it within one unit in the last place (numpy's
    vectorised ``pow`` may round the other way)."""
    if surprise > 0.0:
        return 1.0 - 10.0**-surprise
    return surprise if surprise != surprise else 0.0  # NaN stays NaN


def tail_to_score(tail: np.ndarray) -> np.ndarray:
    """Score ``1 - p`` of a tail probability ``p``, clipped to ``[0, 1]``."""
    return np.clip(1.0 - np.asarray(tail, dtype=np.float64), 0.0, 1.0)


def score_to_surprise(score: np.ndarray | float) -> np.ndarray:
    """``-log10(1 - score)``: the score on a scale whose tail threshold models can fit.

    A score of 0.99 is 2, 0.999 is 3; the cap at 16 keeps ``score == 1`` finite.
    """
    tail = np.clip(1.0 - np.asarray(score, dtype=np.float64), 1e-16, 1.0)
    return -np.log10(tail)


def stack_alike(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``np.stack(arrays)`` for arrays of one shape, 3x faster on many small ones (one
    concatenation; :func:`numpy.stack` expands each array first).

    Examples
    --------
    >>> stack_alike([np.zeros((2, 3)), np.ones((2, 3))]).shape
    (2, 2, 3)
    """
    return np.concatenate(arrays).reshape(len(arrays), *arrays[0].shape)
