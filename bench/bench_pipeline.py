"""Throughput of the pipeline core in-process (no broker): sensors and logs.

What it measures is the work a worker does per message after Kafka hands it over:
decode, route by key, detect, decide, and the state flush per batch. Each figure is
the median of ``--repeats`` runs, all in one process side by side, so ratios between
rows are meaningful even on a noisy machine.

    .venv/bin/python bench/bench_pipeline.py [--devices 50] [--ticks 1000] [--json]
        [--cases "default detector, no causality"] [--no-logs] [--gc-threshold 700]
        [--warm-ticks 2000] [--flush-every 40]

With ``--warm-ticks W`` each run first feeds ``W`` ticks untimed (per-key SPOT
calibrates on 1,000 scores, the Granger checks on 2,000 rows) and times the ``--ticks``
after them: the rate of a worker past its warm-ups rather than a fresh one's.

The state is flushed after every batch, as :func:`stream.embedded.run_embedded` does;
a worker writes it once per checkpoint (``commit_every_s``, 1 s: some 40 batches of
1,000 messages at 40,000 msg/s). ``--flush-every N`` flushes every ``N`` batches, the
work of such a worker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import orjson

import detectors.causality.stacked as granger_module
import stream.pipeline as pipeline_module
from stream.embedded import EmbeddedResult, Message, run_embedded
from stream.pipeline import Pipeline
from stream.runtime import tune_gc
from stream.settings import CausalitySpec, DetectorSpec, Settings
from stream.simulate.oplogs import simulate_oplogs
from stream.simulate.plant import Plant, PlantConfig

STACK_MIN_KEYS = pipeline_module.MIN_KEYS
BATCH = 1000  # messages per pipeline batch
GRANGER_MIN_MONITORS = granger_module.MIN_MONITORS


def sensor_messages(n_devices: int, n_ticks: int, batched: bool) -> tuple[list[Message], int]:
    run = Plant(PlantConfig(n_devices=n_devices, seed=1)).simulate(n_ticks)
    recs = run.batches() if batched else run.readings()
    msgs: list[Message] = [("sensors", r["device"].encode(), orjson.dumps(r)) for r in recs]
    return msgs, n_devices * n_ticks * len(run.sensors)


def log_messages(n_events: int) -> list[Message]:
    run = simulate_oplogs(n_users=20, n_events=n_events, seed=1, faults=0)
    return [("logs", e["user"].encode(), orjson.dumps(e)) for e in run.events]


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _FlushEvery(Pipeline):
    """A pipeline whose :meth:`flush` writes the state every ``every`` calls only."""

    def __init__(self, settings: Settings, every: int) -> None:
        super().__init__(settings)
        self.every, self.calls = every, 0

    def flush(self) -> int:
        self.calls += 1
        return super().flush() if self.calls % self.every == 0 else 0


def timed_past(
    settings: Settings, msgs: list[Message], cut: int, repeats: int, flush_every: int = 1
) -> float:
    """Median seconds to process ``msgs[cut:]`` on a fresh pipeline that has processed
    ``msgs[:cut]`` first (untimed), in one stream: offsets go on, as on a topic.

    ``cut`` is a multiple of the batch size, so the clock starts between batches."""
    times = []
    for _ in range(repeats):
        started: list[float] = []

        def mark(_result: object, total: EmbeddedResult, started: list[float] = started) -> None:
            if not started and total.messages >= cut:
                started.append(time.perf_counter())

        if cut == 0:
            started.append(time.perf_counter())
        pipeline = Pipeline(settings) if flush_every == 1 else _FlushEvery(settings, flush_every)
        run_embedded(pipeline, msgs, BATCH, on_batch=mark)
        times.append(time.perf_counter() - started[0])
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--ticks", type=int, default=1000)
    ap.add_argument("--log-events", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--cases", default="", help="only sensor cases whose name contains this")
    ap.add_argument("--no-logs", action="store_true", help="skip the log case")
    ap.add_argument(
        "--warm-ticks", type=int, default=0, help="ticks fed untimed before the timed ones"
    )
    ap.add_argument(
        "--flush-every",
        type=int,
        default=1,
        help="write the state every N batches (a worker: once a second), not every batch",
    )
    ap.add_argument(
        "--gc-threshold",
        type=int,
        default=Settings.model_fields["gc_threshold"].default,
        help="the collector's young-generation threshold, as a worker sets it (700: Python's)",
    )
    args = ap.parse_args()
    tune_gc(Settings.load(gc_threshold=args.gc_threshold))

    rows: list[dict[str, object]] = []
    all_single, _ = sensor_messages(args.devices, args.warm_ticks + args.ticks, batched=False)
    all_batched, _ = sensor_messages(args.devices, args.warm_ticks + args.ticks, batched=True)
    # Both forms hold the ticks in time order: the first W ticks are the warm-up.
    cut_single = args.warm_ticks * len(all_single) // (args.warm_ticks + args.ticks)
    cut_batched = args.warm_ticks * args.devices
    if cut_single % BATCH or cut_batched % BATCH:
        raise SystemExit("--warm-ticks must make whole batches of 1,000 messages")
    forms = (
        ("one reading per message", all_single, cut_single),
        ("one message per tick", all_batched, cut_batched),
    )
    n_readings = len(all_single) - cut_single
    # (label, detector, Granger checks on, detectors stacked across devices)
    cases = [
        ("robust_zscore, no causality", DetectorSpec(name="robust_zscore"), False, True),
        (
            "robust_zscore, no causality, one by one",
            DetectorSpec(name="robust_zscore"),
            False,
            False,
        ),
        ("default detector, no causality", Settings.load().sensor_detector, False, True),
        (
            "default detector, no causality, one by one",
            Settings.load().sensor_detector,
            False,
            False,
        ),
        ("default (detector + Granger checks)", Settings.load().sensor_detector, True, True),
        (
            "default, Granger checks one by one",
            Settings.load().sensor_detector,
            True,
            True,
        ),
    ]
    for label, spec, causal, stacked in cases:
        if args.cases not in label:
            continue
        settings = Settings.load(sensor_detector=spec, causality=CausalitySpec(enabled=causal))
        # "one by one": the pipeline's per-device path, for comparison in the same run
        pipeline_module.MIN_KEYS = STACK_MIN_KEYS if stacked else 10**9
        granger_alone = label.endswith("Granger checks one by one")
        granger_module.MIN_MONITORS = 10**9 if granger_alone else GRANGER_MIN_MONITORS
        for form, msgs, cut in forms:
            seconds = timed_past(settings, msgs, cut, args.repeats, args.flush_every)
            rows.append(
                {
                    "case": f"sensors: {label}",
                    "form": form,
                    "messages_per_s": (len(msgs) - cut) / seconds,
                    "readings_per_s": n_readings / seconds,
                }
            )
    if not args.no_logs:
        logs = log_messages(args.log_events)
        seconds = timed(lambda: run_embedded(Pipeline(Settings.load()), logs, 1000), args.repeats)
        rows.append(
            {
                "case": "logs: parse + Drain + rare/surprise/auth",
                "form": "one JSON event per message",
                "messages_per_s": len(logs) / seconds,
                "readings_per_s": None,
            }
        )
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'case':48} {'form':26} {'msg/s':>10} {'readings/s':>11}")
    for r in rows:
        rps = r["readings_per_s"]
        print(
            f"{r['case']!s:48} {r['form']!s:26} {r['messages_per_s']:>10,.0f} "
            f"{'' if rps is None else f'{rps:,.0f}':>11}"
        )


if __name__ == "__main__":
    main()
