"""Decoding cost per sensors message: one-reading and 10-tick messages of the plant.

The work :func:`stream.codecs.decode_sensor_message` does for each message the
pipeline takes (checks included), timed in CPU time, median of 7 passes over the same
messages. Run it from each checkout side by side (``PYTHONPATH``, current directory).

    .venv/bin/python bench/bench_decode.py [--devices 100] [--ticks 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from stream.codecs import decode_sensor_message
from stream.pipeline import Pipeline
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--passes", type=int, default=7)
    args = ap.parse_args()
    limits = Pipeline(Settings.load()).limits
    run = Plant(PlantConfig(n_devices=args.devices, seed=1)).simulate(args.ticks)
    forms = {
        "one reading per message": [
            (r["device"].encode(), orjson.dumps(r)) for r in run.readings()
        ],
        "10 ticks per message": [
            (r["device"].encode(), orjson.dumps(r)) for r in run.tick_batches(10)
        ],
    }
    now = time.time()
    for name, msgs in forms.items():
        times = []
        for _ in range(args.passes):
            c0 = time.process_time()
            for key, value in msgs:
                decode_sensor_message(value, key, limits, now)
            times.append(time.process_time() - c0)
        per = statistics.median(times) / len(msgs) * 1e6
        print(f"{name:26} {per:7.2f} us/message (fastest pass {min(times) / len(msgs) * 1e6:.2f})")


if __name__ == "__main__":
    main()
