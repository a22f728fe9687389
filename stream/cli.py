"""The ``vigil`` command line: demo, worker, simulate, topics, config, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from stream.runtime import tune_gc
from stream.settings import Settings


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {"broker": getattr(args, "broker", None), **extra}
    settings = Settings.load(getattr(args, "config", None), **overrides)
    tune_gc(settings)  # demo and worker run the pipeline core
    return settings


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.demo import run_demo

    Console()
    settings = _settings(args, web_port=args.web_port)
    figures = run_demo(
        settings, n_devices=args.devices, n_ticks=args.ticks, seed=args.seed, out_dir=Path(args.out)
    )
    if args.json:
        print(json.dumps(figures))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args, engine=args.engine, web_port=args.web_port)
    if not settings.broker:
        print("vigil worker: no broker configured (set VIGIL_BROKER or --broker)", file=sys.stderr)
        return 2
    if settings.engine == "kafka":
        try:
            from stream.engine_kafka import run_kafka_worker
        except ImportError:
            print("vigil worker: the kafka engine is not available", file=sys.stderr)
            return 2
        run_kafka_worker(settings)
        return 0
    from stream.app import run_worker

    run_worker(settings, loglevel=args.loglevel)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from stream.simulate.emit import log_messages, plant_messages, send_to_kafka, write_files
    from stream.simulate.faults import FaultSpec
    from stream.simulate.oplogs import simulate_oplogs
    from stream.simulate.plant import Plant, PlantConfig

    plant = Plant(PlantConfig(n_devices=args.devices, seed=args.seed))
    specs = list(plant.random_faults(args.faults, args.ticks)) if args.faults else []
    for text in args.fault or []:
        try:
            kind, device, sensor, start, end = text.split(":")
            specs.append(FaultSpec(device, (sensor,), kind, int(start), int(end)))
        except ValueError as exc:
            print(f"vigil simulate: bad --fault {text!r}: {exc}", file=sys.stderr)
            return 2
    run = plant.simulate(args.ticks, specs)
    logs = simulate_oplogs(n_users=args.users, n_events=args.ticks, seed=args.seed)
    if args.broker:
        settings = _settings(args)
        msgs = list(plant_messages(run, settings.topic("sensors"), batched=args.batched))
        msgs += list(log_messages(logs, settings.topic("logs")))
        msgs.sort(key=lambda m: float(m[2]["ts"]))
        n = send_to_kafka(
            msgs,
            settings.broker or "",
            rate=args.rate,
            producer_config={"partitioner": "murmur2_random"},
        )
        print(f"sent {n} messages to {settings.broker}")
    out = Path(args.out)
    paths = write_files(run, logs, out, batched=args.batched)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from stream.topics import create_topics

    settings = _settings(args, partitions=args.partitions) if args.partitions else _settings(args)
    for name, status in create_topics(settings).items():
        print(f"{name}: {status}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.file)
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        print(f"{args.file}: invalid configuration\n{exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    print(settings.model_dump_json(indent=2, exclude={"sasl_password"}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--broker", help="Kafka bootstrap servers (default: $VIGIL_BROKER)")
        p.add_argument("--config", help="YAML or TOML settings file")

    p = sub.add_parser("demo", help="simulated plant through the pipeline, scored against truth")
    common(p)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--ticks", type=int, default=3000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default="vigil-out", help="directory of the plot and logs")
    p.add_argument("--web-port", type=int, default=6066)
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", help="run a stream worker on Kafka")
    common(p)
    p.add_argument("--engine", choices=("faust", "kafka"), default=None)
    p.add_argument("--web-port", type=int, default=None)
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("simulate", help="simulate a plant and operation logs")
    common(p)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--ticks", type=int, default=5000)
    p.add_argument("--faults", type=int, default=20, help="random faults to inject")
    p.add_argument(
        "--fault",
        action="append",
        metavar="KIND:DEVICE:SENSOR:START:END",
        help="inject this fault (e.g. stuck:pump-003:flow:600:2400); repeatable",
    )
    p.add_argument("--users", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=None, help="messages per second to Kafka")
    p.add_argument("--batched", action="store_true", help="one message per device per tick")
    p.add_argument("--out", default="vigil-sim", help="directory for files")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("topics", help="manage Vigil's topics")
    tsub = p.add_subparsers(dest="action", required=True)
    pc = tsub.add_parser("create", help="create the topics (partition counts from settings)")
    common(pc)
    pc.add_argument("--partitions", type=int, default=None)
    pc.set_defaults(func=cmd_topics)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="action", required=True)
    pc = csub.add_parser("check", help="validate a settings file")
    pc.add_argument("file")
    pc.set_defaults(func=cmd_config_check)

    try:
        from stream.evaluate.cli import add_evaluate_parser
    except ImportError:
        pass
    else:
        add_evaluate_parser(sub)
    try:
        from stream.tools import add_tool_parsers
    except ImportError:
        pass
    else:
        add_tool_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"vigil: invalid settings\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
