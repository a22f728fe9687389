"""Streaming alarm thresholds on score streams (extreme value theory: SPOT, DSPOT)."""

from __future__ import annotations

from detectors.thresholds.base import Threshold, register_threshold, restore_threshold
from detectors.thresholds.gpd import fit_gpd
from detectors.thresholds.spot import DSPOT, SPOT

__all__ = ["DSPOT", "SPOT", "Threshold", "fit_gpd", "register_threshold", "restore_threshold"]
