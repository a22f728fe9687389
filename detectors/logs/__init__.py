"""Detectors of operation logs: templates, rare templates, command sequences, auth events.

:class:`TemplateMiner` turns raw lines into template ids (it is a parser, not a
detector); the detectors below follow :class:`detectors.base.Detector` on records and
are registered by name.
"""

from __future__ import annotations

from detectors.logs.auth import AuthDetector, AuthFinding
from detectors.logs.base import LogDetector
from detectors.logs.rare import RareTemplateDetector
from detectors.logs.sequence import CommandSequenceDetector
from detectors.logs.templates import MinedTemplate, TemplateMiner

__all__ = [
    "AuthDetector",
    "AuthFinding",
    "CommandSequenceDetector",
    "LogDetector",
    "MinedTemplate",
    "RareTemplateDetector",
    "TemplateMiner",
]
