"""Process-level tuning of a Vigil process (worker, demo, evaluation).

Python's cyclic garbage collector runs a young-generation pass every 700 new
container objects by default, and objects that survive are traversed again in the
older generations. A worker allocates a few objects per reading (decoded readings,
rows, small tuples) and holds many long-lived ones (a model per device): with the
default, about 15 % of the kafka engine's time went to those passes
(`bench/bench_pipeline.py`, side by side in docs/BENCHMARKS.md). Vigil's state holds
few reference cycles; reference counting frees almost everything, so collecting
less often costs little memory.
"""

from __future__ import annotations

import gc

from stream.settings import Settings


def tune_gc(settings: Settings) -> None:
    """Set the collector's young-generation threshold to ``settings.gc_threshold``
    (0 leaves Python's own); the older generations keep their thresholds."""
    if settings.gc_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(settings.gc_threshold, older, oldest)
