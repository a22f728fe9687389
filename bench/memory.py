"""Resident memory of the pipeline core holding many device models, and its growth.

A worker keeps the model of every device of its partitions in memory (the changelog
only backs them up). This benchmark measures what that costs: one 8-sensor device
(correlated random walks, the default detectors with Granger checks) is run through
the core for ``--ticks`` ticks, its snapshot becomes the template, and then ``N``
devices are restored from it (a worker taking over partitions restores exactly such
snapshots) and each is sent the template's next ``--live`` ticks (21 by default: one
more than the ring of recent scores each channel keeps for the HTTP API, so every
per-reading buffer is full), so every model is live in memory as in a running worker. The
resident set size (``VmRSS``) is read after each step of ``N``; the slope between the
steps is the memory per device, and the steps show whether growth is linear.

Each stage runs in its own process so the figures do not carry over:

* ``warm-up``: the template has seen 1,000 ticks (mid Granger warm-up, the state a
  fleet has soon after it starts);
* ``monitoring``: 2,600 ticks (past the Granger warm-up and SPOT's calibration).

    .venv/bin/python bench/memory.py [--devices 1000,10000,30000,100000] [--live 21] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stream.embedded import Message, run_embedded
from stream.pipeline import Pipeline, Record
from stream.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from state_size import messages

STAGES = {"warm-up": 1000, "monitoring": 2600}


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class TemplateStore:
    """Every device's stored state is the template's, renamed; writes are dropped.

    Nothing is held per device, so the resident memory is the live models' alone.
    """

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = {**template, "offsets": {}}
        self.written = 0

    def get(self, key: str) -> bytes | None:
        return orjson.dumps({**self.template, "device": key}, option=orjson.OPT_SERIALIZE_NUMPY)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.written += len(value)


def template(msgs: list[Message]) -> dict[str, Any]:
    pipeline = Pipeline(Settings.load())
    run_embedded(pipeline, msgs, 500)
    snap: dict[str, Any] = pipeline.devices["dev-8"].snapshot()
    return snap


def one_tick(device: str, offset: int, body: dict[str, Any]) -> Record:
    """The template's reading ``body`` as device ``device``'s input at ``offset``."""
    payload = orjson.dumps({**body, "device": device})
    return Record("sensors", 0, offset, device.encode(), payload)


def stage(ticks: int, steps: list[int], live: int = 21) -> dict[str, Any]:
    """Measure one stage in this process (see the module docstring)."""
    msgs = messages(ticks + live)
    store = TemplateStore(template(msgs[:ticks]))
    # What the template's device sent next: no jump for the models to flag.
    follow = [orjson.loads(body) for _, _, body in msgs[ticks:]]
    pipeline = Pipeline(Settings.load(), device_store=store)
    gc.collect()
    base = rss_bytes()
    out: list[dict[str, Any]] = []
    have = 0
    t0 = time.perf_counter()
    for n in steps:
        for r, body in enumerate(follow):
            for lo in range(have, n, 1000):
                batch = [
                    one_tick(f"dev-{k}", r * 10_000_000 + k, body)
                    for k in range(lo, min(lo + 1000, n))
                ]
                pipeline.process_sensors(batch)
                pipeline.flush()
        have = n
        gc.collect()
        rss = rss_bytes()
        out.append(
            {
                "devices": n,
                "rss_bytes": rss,
                "over_start_bytes": rss - base,
                "per_device_bytes": (rss - base) / n,
                "seconds": time.perf_counter() - t0,
            }
        )
    model = pipeline.devices["dev-0"]
    return {
        "ticks": ticks,
        "state_bytes": model.state_size(),
        "snapshot_bytes": len(store.get("dev-0") or b""),
        "start_rss_bytes": base,
        "steps": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", default="1000,10000,30000,100000")
    ap.add_argument("--live", type=int, default=21, help="ticks each device gets after restore")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = sorted({int(s) for s in args.devices.split(",")})
    if args.stage:  # the child process of one stage
        print(json.dumps(stage(STAGES[args.stage], steps, args.live)))
        return
    results = {}
    for name in STAGES:
        cmd = [sys.executable, __file__, "--stage", name, "--devices", args.devices]
        cmd += ["--live", str(args.live)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[name] = json.loads(done.stdout)
    if args.json:
        print(json.dumps(results))
        return
    for name, res in results.items():
        print(
            f"{name}: template after {res['ticks']:,} ticks; model state "
            f"{res['state_bytes']:,} B, snapshot {res['snapshot_bytes']:,} B; "
            f"RSS at start {res['start_rss_bytes'] / 2**20:,.0f} MiB"
        )
        prev_n, prev_rss = 0, res["start_rss_bytes"]
        print(f"  {'devices':>8} {'RSS MiB':>9} {'per device B':>13} {'slope B':>9} {'s':>6}")
        for s in res["steps"]:
            slope = (s["rss_bytes"] - prev_rss) / (s["devices"] - prev_n)
            print(
                f"  {s['devices']:>8,} {s['rss_bytes'] / 2**20:>9,.0f} "
                f"{s['per_device_bytes']:>13,.0f} {slope:>9,.0f} {s['seconds']:>6.0f}"
            )
            prev_n, prev_rss = s["devices"], s["rss_bytes"]


if __name__ == "__main__":
    main()
