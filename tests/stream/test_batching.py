"""What the pipeline publishes does not depend on how Kafka cut the input into batches.

A consumer's batches depend on timing (fetch sizes, linger, a slow machine), and a
restart cuts the stream at any point. Detection must be a function of the input per
key, not of those cuts: every batch size, and a restart from the stored state between
any two batches, must publish exactly the same anomaly events.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

import orjson
import pytest

from stream.embedded import Message, run_embedded
from stream.pipeline import MemoryStore, Pipeline, Record
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig

N_TICKS = 900


def plant_messages(per_reading: bool) -> list[Message]:
    plant = Plant(PlantConfig(n_devices=3, seed=21))
    run = plant.simulate(N_TICKS, plant.random_faults(6, N_TICKS, duration=(40, 120)))
    records = run.readings() if per_reading else run.batches()
    return [("sensors", r["device"].encode(), orjson.dumps(r)) for r in records]


def settings(detector: str) -> Settings:
    spec: dict[str, Any] = {"name": detector}
    if detector == "mahalanobis":
        spec["params"] = {"alpha": 0.005}
    return Settings.load(
        warmup=100,
        sensor_detector=spec,
        causality={"params": {"lag": 2, "window": 120, "warmup": 300}},
    )


def ids_by_batch_size(s: Settings, messages: list[Message], size: int) -> list[str]:
    return sorted(a.id for a in run_embedded(Pipeline(s), messages, size).anomalies)


def ids_with_restarts(s: Settings, messages: list[Message], cuts: list[int]) -> list[str]:
    """Feed ``messages`` with a new Pipeline (same store) taking over at each cut."""
    store = MemoryStore()
    topic = s.topic("sensors")
    records = [Record(topic, 0, i, k, v) for i, (_, k, v) in enumerate(messages)]
    ids: list[str] = []
    bounds = [0, *cuts, len(records)]
    for lo, hi in pairwise(bounds):
        p = Pipeline(s, device_store=store)
        for i in range(lo, hi, 50):
            ids += [a.id for a in p.process_sensors(records[i : min(i + 50, hi)]).anomalies]
        p.flush()
    return sorted(ids)


@pytest.mark.parametrize("per_reading", [True, False], ids=["per-reading", "per-tick"])
@pytest.mark.parametrize("detector", ["max_of", "mahalanobis"])
def test_same_anomalies_for_any_batching_and_restarts(detector: str, per_reading: bool) -> None:
    s = settings(detector)
    messages = plant_messages(per_reading)
    reference = ids_by_batch_size(s, messages, len(messages))
    kinds = Counter(a.kind for a in run_embedded(Pipeline(s), messages, len(messages)).anomalies)
    # Both paths must be exercised, or the comparison proves nothing.
    assert kinds["sensor"] > 0 and kinds["causality"] > 0, kinds
    for size in (1, 3, 7, 64):
        assert ids_by_batch_size(s, messages, size) == reference, f"batch size {size}"
    n = len(messages)
    for cuts in ([n // 2], [n // 7, n // 3 + 1, 2 * n // 3 + 2]):
        assert ids_with_restarts(s, messages, cuts) == reference, f"restarts at {cuts}"
