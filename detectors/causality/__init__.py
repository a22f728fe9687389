"""Causal-structure detectors: online Granger causality over a device's sensors.

* :mod:`~detectors.causality.var`: VAR(p) sufficient statistics over an exact sliding
  window or with exponential forgetting.
* :mod:`~detectors.causality.granger`: pairwise and conditional Granger F tests from
  those statistics (the pairwise test matches ``statsmodels``' ``ssr_ftest``).
* :mod:`~detectors.causality.checks`: :class:`GrangerMonitor`, the decoupling /
  new-link / lying-sensor checks (registered as ``"granger_monitor"``).
"""

from __future__ import annotations

from detectors.causality._fdist import f_isf, f_sf
from detectors.causality.checks import CausalityFinding, GrangerMonitor
from detectors.causality.granger import (
    GrangerResult,
    all_pairs,
    conditional_granger,
    pairwise_from_gram,
    pairwise_granger,
)
from detectors.causality.var import OnlineVAR

__all__ = [
    "CausalityFinding",
    "GrangerMonitor",
    "GrangerResult",
    "OnlineVAR",
    "all_pairs",
    "conditional_granger",
    "f_isf",
    "f_sf",
    "pairwise_from_gram",
    "pairwise_granger",
]
