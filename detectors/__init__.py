"""Vigil's detectors: online anomaly detection algorithms on numpy, free of any I/O.

Every detector follows :class:`detectors.base.Detector` and is registered by name in
:mod:`detectors.registry`, so configuration can choose it.
"""

from __future__ import annotations

from detectors import causality, ensemble, logs, multivariate, normalise, thresholds, univariate
from detectors.base import Detector, MultivariateDetector, SnapshotError, UnivariateDetector
from detectors.registry import available, create, get, register, restore

__all__ = [
    "Detector",
    "MultivariateDetector",
    "SnapshotError",
    "UnivariateDetector",
    "available",
    "causality",
    "create",
    "ensemble",
    "get",
    "logs",
    "multivariate",
    "normalise",
    "register",
    "restore",
    "thresholds",
    "univariate",
]
