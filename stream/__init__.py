"""Vigil's stream side: the data path from Kafka topics to anomaly events and metrics.

The path, module by module::

    topic -> codecs (decode) -> pipeline (route by key) -> state (per-key models)
          -> decide (thresholds, episodes) -> sinks (publish: topics, metrics)

``pipeline`` is the core and knows nothing of Kafka; ``app`` (faust), ``embedded``
(in-process) and the tests drive the same core.
"""

from __future__ import annotations

__version__ = "0.1.0"
