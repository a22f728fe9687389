"""Detectors of one series at a time (vectorised over a device's channels).

========================  ===================  ==========================================
registry name             class                for
========================  ===================  ==========================================
``robust_zscore``         RobustZScore         spikes, shifts in stationary signals
``ewma``                  EWMAChart            small persistent mean shifts
``cusum``                 CUSUM                earliest detection of a level shift
``page_hinkley``          PageHinkley          mean change with no trusted baseline
``seasonal``              SeasonalBaseline     signals with a daily / weekly shape
``forecast``              ARForecast           autocorrelated signals, dynamics changes
``flatline``              Flatline             stuck sensors (exact repeats)
``max_of``                MaxOf                several of the above at once (default)
``likelihood``            AnomalyLikelihood    noisy real series: unusual *recent* scores
========================  ===================  ==========================================
"""

from __future__ import annotations

from detectors.univariate.cusum import CUSUM
from detectors.univariate.ewma import EWMAChart
from detectors.univariate.flatline import Flatline
from detectors.univariate.forecast import ARForecast
from detectors.univariate.likelihood import AnomalyLikelihood
from detectors.univariate.max_of import MaxOf
from detectors.univariate.page_hinkley import PageHinkley
from detectors.univariate.robust_zscore import RobustZScore
from detectors.univariate.seasonal import SeasonalBaseline

__all__ = [
    "CUSUM",
    "ARForecast",
    "AnomalyLikelihood",
    "EWMAChart",
    "Flatline",
    "MaxOf",
    "PageHinkley",
    "RobustZScore",
    "SeasonalBaseline",
]
