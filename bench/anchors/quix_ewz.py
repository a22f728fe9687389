"""Anchor: a Quix Streams app doing per-key work on the benchmark topic.

Per key (the device) and sensor, an exponentially weighted mean and variance and the
z-score of each reading, in Quix Streams' state (RocksDB), as issue 7's table
describes its Quix anchor. Quix Streams pins an older confluent-kafka than Vigil, so it
runs from its own environment (``.venv-quix``, made by ``bench/bench_kafka.py --quix``):
a benchmark dependency only. Prints one JSON object: seconds from the first message to
the ``n``-th, and the start-up time.

    .venv-quix/bin/python bench/anchors/quix_ewz.py BROKER TOPIC N
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid

from quixstreams import Application

ALPHA = 0.01


def main() -> None:
    broker, topic_name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    started = time.monotonic()
    app = Application(
        broker_address=broker,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        loglevel="WARNING",
        auto_create_topics=True,
        use_changelog_topics=True,
    )
    topic = app.topic(topic_name, key_deserializer="bytes", value_deserializer="json")
    sdf = app.dataframe(topic)
    progress = {"seen": 0, "first": 0.0}

    def ewz(reading: dict, state) -> float:  # type: ignore[no-untyped-def]
        if not progress["seen"]:
            progress["first"] = time.monotonic()
        sensor = reading["sensor"]
        x = float(reading["value"])
        mean, var, count = state.get(sensor, (x, 1.0, 0))
        z = (x - mean) / var**0.5 if count > 10 else 0.0
        d = x - mean
        mean += ALPHA * d
        var = (1 - ALPHA) * (var + ALPHA * d * d)
        state.set(sensor, (mean, var, count + 1))
        progress["seen"] += 1
        if progress["seen"] >= n:
            done = time.monotonic()
            out = {"seconds": done - progress["first"], "startup_s": progress["first"] - started}
            print(json.dumps(out), flush=True)
            os._exit(0)  # the figure is out; shutdown is not part of it
        return z

    sdf = sdf.apply(ewz, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
