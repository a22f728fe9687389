"""Benchmarks of detection quality, run through the same pipeline core as the worker.

``vigil evaluate nab|skab|synthetic`` feed labelled data through
:func:`stream.embedded.run_embedded` (:mod:`stream.evaluate.runner`) and score the
pipeline's per-point scores and anomaly events with each benchmark's published
protocol; ``masquerade|loghub|deeplog`` run the log benchmarks' own harnesses.
"""

from __future__ import annotations

BENCHMARKS = ("nab", "skab", "masquerade", "loghub", "deeplog", "synthetic")
