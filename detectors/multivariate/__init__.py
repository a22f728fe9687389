"""Detectors of all channels jointly, with per-channel attribution.

Importing this package registers ``pca``, ``mahalanobis``, ``var_residual``, ``hst``,
``loda`` and the ``ensemble`` combinator (which lives in :mod:`detectors.ensemble`).
"""

from __future__ import annotations

from detectors.multivariate.hst import HalfSpaceTrees
from detectors.multivariate.loda import Loda
from detectors.multivariate.mahalanobis import RobustMahalanobis
from detectors.multivariate.pca import OnlinePCA
from detectors.multivariate.var_residual import VarResidual

__all__ = ["HalfSpaceTrees", "Loda", "OnlinePCA", "RobustMahalanobis", "VarResidual"]

# The ensemble sits beside the packages it combines; importing it here registers it.
from detectors import ensemble as ensemble
