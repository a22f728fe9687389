"""Grimshaw's maximum-likelihood GPD fit: what it returns is the likelihood's maximum."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.thresholds.gpd import fit_gpd, gpd_log_likelihood


def gpd_sample(gamma: float, sigma: float, n: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random(n)
    if gamma == 0.0:
        return -sigma * np.log(u)
    return sigma / gamma * (u ** (-gamma) - 1.0)


# A small sample of a bounded tail (gamma < 0) often has no interior maximum: its
# likelihood grows towards gamma = -1, and the fit returns the exponential; so the
# bounded case is checked on a sample large enough to have one.
@pytest.mark.parametrize(
    ("gamma", "n"), [(-0.3, 250), (0.0, 30), (0.0, 250), (0.25, 30), (0.25, 250)]
)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_the_fit_is_the_maximum_of_the_likelihood(gamma: float, n: int, scale: float) -> None:
    y = gpd_sample(gamma, scale, n, seed=n)
    g, s = fit_gpd(y)
    best = gpd_log_likelihood(y, g, s)
    assert np.isfinite(best)
    # No point of a wide grid of shapes and scales does better (shapes from -1/2: below
    # it the likelihood is irregular and grows without bound towards -1, Smith 1985) ...
    for gg in np.linspace(-0.5, 1.5, 41):
        for ss in s * np.geomspace(0.2, 5.0, 41):
            assert gpd_log_likelihood(y, float(gg), float(ss)) <= best + 1e-9 * abs(best)
    # ... nor any small step from it (a stationary point, not a grid neighbour).
    for dg, ds in [(1e-4, 0), (-1e-4, 0), (0, 1e-4), (0, -1e-4), (1e-4, 1e-4), (-1e-4, -1e-4)]:
        assert gpd_log_likelihood(y, g + dg, s * (1 + ds)) <= best + 1e-12 * abs(best)
