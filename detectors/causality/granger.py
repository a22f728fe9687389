"""Granger causality F tests from the sufficient statistics of :class:`OnlineVAR`.

Granger (1969), "Investigating Causal Relations by Econometric Models and
Cross-spectral Methods", Econometrica 37(3): ``i`` Granger-causes ``j`` if the past of
``y_i`` improves the prediction of ``y_j`` beyond what the past of ``y_j`` (and of the
other conditioning series) gives.

Two versions, both computed from sub-blocks of ``G`` with no re-scan of data:

**Pairwise** (:func:`pairwise_granger`, what ``statsmodels``'
``grangercausalitytests(data[:, [j, i]], maxlag=p)`` reports as ``ssr_ftest``):
unrestricted ``y_j ~ [1, y_j lags 1..p, y_i lags 1..p]`` against restricted
``y_j ~ [1, y_j lags 1..p]``,
``F = ((RSS_r - RSS_u) / p) / (RSS_u / (n - 2p - 1))`` with ``F(p, n - 2p - 1)``.
One Cholesky factorisation of the augmented ``(2p + 2)``-square block
``[restricted, cause lags, target]`` gives both sums of squares: the squared entries of
the factor's last row are the sums of squares explained column by column, so
``RSS_r - RSS_u`` is summed directly (no cancellation between two large RSS values).
Cost O((2p + 2)^3 / 3) per pair, batched over pairs in numpy. It also reports indirect
links (``a -> b -> c`` shows ``a -> c``), which is what the monitor wants as a baseline.

**Conditional** (:func:`conditional_granger`): ``y_j`` on the lags of *all* sensors
against all but ``i``; ``F(p, n - d p - 1)``. One factorisation of the ``m x m`` regressor
block (``m = d p + 1``) serves every target; dropping sensor ``i`` costs a ``p x p`` solve
(Wald form ``b_i' [(Z'Z)^{-1}]_{ii}^{-1} b_i``). Cost O(m^3 + d^2 p^3) for all pairs. It
removes indirect links but needs ``n >> d p`` and loses power with collinear sensors.

A tiny ridge (``ridge * mean diagonal``) keeps the factorisation defined for constant
or collinear sensors; at the default 1e-12 it moves F by far less than 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.causality._fdist import f_sf
from detectors.causality.var import OnlineVAR


@dataclass(frozen=True)
class GrangerResult:
    """F tests of ``cause[k] -> effect[k]`` for a batch of ordered pairs.

    Attributes
    ----------
    cause, effect : ndarray of int
        Sensor indices of each pair.
    f : ndarray
        F statistics (``nan`` where the window is too short).
    df1, df2 : float
        Degrees of freedom (``p`` and ``n - 2p - 1`` or ``n - d p - 1``).
    partial_r2 : ndarray
        ``(RSS_r - RSS_u) / RSS_r``: the share of the residual variance of the effect
        that the cause's past explains (the edge strength).
    """

    cause: np.ndarray
    effect: np.ndarray
    f: np.ndarray
    df1: float
    df2: float
    partial_r2: np.ndarray

    def pvalues(self) -> np.ndarray:
        """``P(F(df1, df2) > f)`` of each pair."""
        if self.df2 <= 0:
            return np.full(self.f.shape, np.nan)
        return f_sf(self.f, self.df1, self.df2)


def all_pairs(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair ``(cause, effect)`` with ``cause != effect``, row-major.

    Examples
    --------
    >>> c, e = all_pairs(3)
    >>> list(zip(c.tolist(), e.tolist()))
    [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    """
    c, e = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
    keep = c != e
    return c[keep], e[keep]


def _cholesky(M: np.ndarray, n_reg: int, ridge: float, retry: bool = True) -> np.ndarray:
    """Batched Cholesky of ``M`` with a ridge on its first ``n_reg`` diagonal entries
    (raised step by step while a block is not positive definite, unless not ``retry``)."""
    diag = np.einsum("...ii->...i", M[..., :n_reg, :n_reg])
    scale = np.maximum(diag.mean(axis=-1), 1e-300)
    eye = np.zeros(M.shape[-1])
    eye[:n_reg] = 1.0
    if not retry:
        return np.linalg.cholesky(M + (ridge * scale)[..., None, None] * np.diag(eye))
    for r in (ridge, 1e-9, 1e-6, 1e-3):
        try:
            return np.linalg.cholesky(M + (r * scale)[..., None, None] * np.diag(eye))
        except np.linalg.LinAlgError:
            eye[:] = 1.0  # a constant target has a zero pivot: ridge every entry next
    for r in (ridge, 1e-9, 1e-6, 1e-3):
        try:
            return np.linalg.cholesky(M + (r * scale)[..., None, None] * np.diag(eye))
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("Granger block is not positive definite even with a ridge")


def pairwise_from_gram(
    G: np.ndarray,
    d: int,
    lag: int,
    n_obs: float,
    cause: np.ndarray,
    effect: np.ndarray,
    ridge: float = 1e-12,
) -> GrangerResult:
    """Pairwise Granger F tests from an augmented cross-product matrix.

    ``G`` is laid out as :class:`~detectors.causality.var.OnlineVAR` keeps it:
    ``[1, y_t, y_{t-1}, ..., y_{t-p}]`` with ``d`` sensors per lag block.
    """
    cause = np.asarray(cause, dtype=np.int64)
    effect = np.asarray(effect, dtype=np.int64)
    df2 = float(n_obs - 2 * lag - 1)
    if len(cause) == 0 or df2 <= 0:
        nan = np.full(len(cause), np.nan)
        return GrangerResult(cause, effect, nan, float(lag), df2, nan.copy())
    f, r2 = pairwise_from_grams(G[None], d, lag, n_obs, cause, effect, ridge)
    return GrangerResult(cause, effect, f[0], float(lag), df2, r2[0])


def pairwise_from_grams(
    G: np.ndarray,
    d: int,
    lag: int,
    n_obs: float,
    cause: np.ndarray,
    effect: np.ndarray,
    ridge: float = 1e-12,
    retry: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """F statistics and partial R^2 of the same pairs in each of a stack of ``G``,
    shape ``(n, pairs)`` each (see :func:`pairwise_from_gram`); every ``G`` holds
    ``n_obs > 2 lag + 1`` rows. Without ``retry``, a block that is not positive
    definite at the ``ridge`` raises :class:`numpy.linalg.LinAlgError` (a retry would
    raise the ridge of every block, not only of its own ``G``)."""
    n, pairs = len(G), len(cause)
    which = np.repeat(np.arange(n), pairs)
    f, r2 = pairs_from_grams(
        G, which, np.tile(cause, n), np.tile(effect, n), d, lag, n_obs, ridge, retry
    )
    return f.reshape(n, -1), r2.reshape(n, -1)


def pairs_from_grams(
    G: np.ndarray,
    which: np.ndarray,
    cause: np.ndarray,
    effect: np.ndarray,
    d: int,
    lag: int,
    n_obs: float,
    ridge: float = 1e-12,
    retry: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """F statistics and partial R^2 of pair ``k`` (``cause[k] -> effect[k]``) in the
    window of ``G[which[k]]``, shape ``(len(which),)`` each: many windows' own pairs
    in one batched factorisation (see :func:`pairwise_from_grams`)."""
    p = lag
    lags = np.arange(1, p + 1)
    own = 1 + lags[None, :] * d + effect[:, None]
    other = 1 + lags[None, :] * d + cause[:, None]
    order = np.hstack(
        [np.zeros((len(cause), 1), dtype=np.int64), own, other, (1 + effect)[:, None]]
    )
    df2 = float(n_obs - 2 * p - 1)
    M = G[which[:, None, None], order[:, :, None], order[:, None, :]]
    L = _cholesky(M, 2 * p + 1, ridge, retry)
    last = L[:, -1, :]
    rss_u = last[:, -1] ** 2
    explained = np.sum(last[:, p + 1 : 2 * p + 1] ** 2, axis=1)
    rss_r = rss_u + explained
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (explained / p) / (rss_u / df2)
        r2 = np.where(rss_r > 0, explained / rss_r, 0.0)
    return f, r2


def pairwise_granger(
    var: OnlineVAR,
    cause: np.ndarray | None = None,
    effect: np.ndarray | None = None,
    ridge: float = 1e-12,
) -> GrangerResult:
    """Pairwise Granger tests of ``cause -> effect`` (all ordered pairs by default).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.zeros((600, 2))
    >>> for t in range(1, 600):  # sensor 0 drives sensor 1 with lag 1
    ...     y[t, 0] = 0.5 * y[t - 1, 0] + rng.normal()
    ...     y[t, 1] = 0.8 * y[t - 1, 0] + rng.normal()
    >>> var = OnlineVAR(d=2, lag=2, window=500)
    >>> for row in y:
    ...     var.update(row)
    >>> res = pairwise_granger(var)
    >>> [(int(c), int(e)) for c, e, p in zip(res.cause, res.effect, res.pvalues()) if p < 1e-3]
    [(0, 1)]
    """
    if cause is None or effect is None:
        cause, effect = all_pairs(var.d)
    return pairwise_from_gram(var.gram(), var.d, var.lag, var.n_obs, cause, effect, ridge)


def conditional_granger(var: OnlineVAR, ridge: float = 1e-12) -> GrangerResult:
    """Conditional Granger tests of every ordered pair given all other sensors' lags.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.zeros((800, 3))
    >>> for t in range(1, 800):  # a chain 0 -> 1 -> 2
    ...     y[t, 0] = 0.5 * y[t - 1, 0] + rng.normal()
    ...     y[t, 1] = 0.9 * y[t - 1, 0] + rng.normal()
    ...     y[t, 2] = 0.9 * y[t - 1, 1] + rng.normal()
    >>> var = OnlineVAR(d=3, lag=1, window=700)
    >>> for row in y:
    ...     var.update(row)
    >>> res = conditional_granger(var)
    >>> [(int(c), int(e)) for c, e, p in zip(res.cause, res.effect, res.pvalues()) if p < 1e-3]
    [(0, 1), (1, 2)]
    """
    d, p = var.d, var.lag
    G = var.gram()
    z = var.regressor_index()
    m = len(z)
    cause, effect = all_pairs(d)
    df2 = float(var.n_obs - m)
    if df2 <= 0:
        nan = np.full(len(cause), np.nan)
        return GrangerResult(cause, effect, nan, float(p), df2, nan.copy())
    Gzz = G[np.ix_(z, z)]
    Gzy = G[np.ix_(z, np.arange(1, 1 + d))]
    L = _cholesky(Gzz, m, ridge)
    W = np.linalg.solve(L, Gzy)  # L^{-1} Z'Y
    rss_full = np.diag(G)[1 : 1 + d] - np.sum(W**2, axis=0)
    Linv = np.linalg.solve(L, np.eye(m))
    H = Linv.T @ Linv  # (Z'Z)^{-1}
    B = H @ Gzy
    # Position of sensor i's lags among the regressors [1, lag-1 block, lag-2 block, ...].
    pos = 1 + (np.arange(p)[None, :] * d) + np.arange(d)[:, None]  # (d, p)
    V = H[pos[:, :, None], pos[:, None, :]]  # (d, p, p)
    b = B[pos]  # (d, p, d): coefficients of sensor i's lags for each target
    sol = np.linalg.solve(V, b)
    delta = np.sum(b * sol, axis=1)  # (d_cause, d_effect): RSS increase when dropping i
    dl = delta[cause, effect]
    rss = rss_full[effect]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (dl / p) / (rss / df2)
        r2 = dl / (rss + dl)
    return GrangerResult(cause, effect, f, float(p), df2, r2)
