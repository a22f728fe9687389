"""Anchor: a bare faust agent on the benchmark topic (decode, count, no state, no output).

Run by ``bench/bench_kafka.py`` in a subprocess with the main environment; prints one
JSON object: seconds from the first message to the ``n``-th and the start-up time. The
agent takes batches as Vigil's worker does (``take_events``), so the difference to the
worker is the pipeline, not the way faust is driven.

    .venv/bin/python bench/anchors/faust_bare.py BROKER TOPIC N PARTITIONS
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid

import faust
import orjson


def main() -> None:
    broker, topic_name, n, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    started = time.monotonic()
    app = faust.App(
        f"bench-faust-bare-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{broker}",
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=partitions,
        datadir=tempfile.mkdtemp(prefix="faust-bare-"),
        stream_wait_empty=False,
    )
    topic = app.topic(
        topic_name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    seen = 0
    first = 0.0

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        nonlocal seen, first
        async for events in stream.take_events(1000, within=0.1):  # type: ignore[attr-defined]
            if not seen:
                first = time.monotonic()
            for ev in events:
                orjson.loads(ev.message.value)
            seen += len(events)
            if seen >= n:
                done = time.monotonic()
                print(
                    json.dumps({"seconds": done - first, "startup_s": first - started}), flush=True
                )
                os._exit(0)  # the figure is out; faust's shutdown is not part of it

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
