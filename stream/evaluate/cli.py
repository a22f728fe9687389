"""``vigil evaluate <benchmark>``: run a benchmark, print a table or one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from stream.evaluate import BENCHMARKS
from stream.evaluate.runner import Advance, default_data_dir
from stream.runtime import tune_gc
from stream.settings import Settings

#: Folder of each benchmark under the datasets directory.
FOLDERS = {
    "nab": "nab",
    "skab": "skab",
    "masquerade": "masquerade",
    "loghub": "loghub",
    "deeplog": "deeplog-hdfs",
    "synthetic": "",
}


def add_evaluate_parser(subparsers: Any) -> None:
    """Register ``vigil evaluate`` on the main parser's subcommands."""
    p = subparsers.add_parser("evaluate", help="measure detection quality on a benchmark")
    p.add_argument("benchmark", choices=BENCHMARKS)
    p.add_argument("--data", help="dataset folder (default: $VIGIL_DATASETS/<name>)")
    p.add_argument("--config", help="YAML or TOML settings file (default: shipped defaults)")
    p.add_argument("--json", action="store_true", help="print one JSON object, no table")
    p.add_argument(
        "--export-nab-results",
        metavar="DIR",
        help="nab: write NAB results files <detector>/<category>/<detector>_<file>.csv",
    )
    p.add_argument("--hold", type=int, default=None, help="nab: refractory points after an alarm")
    p.add_argument(
        "--seeds",
        default="7",
        help="synthetic: plant seeds, comma-separated (several: per-seed rows and their mean)",
    )
    p.set_defaults(func=cmd_evaluate)


@contextmanager
def _progress(console: Console, total: int | None, quiet: bool) -> Iterator[Advance]:
    if quiet:
        yield lambda _n: None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("messages", total=total)
        yield lambda n: bar.advance(task, n)


def _count_lines(paths: list[Path], header: int = 1) -> int:
    total = 0
    for p in paths:
        with p.open("rb") as fh:
            total += sum(1 for _ in fh) - header
    return total


def _table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right" if h != header[0] else "left")
    for r in rows:
        table.add_row(*r)
    return table


def _run_nab(
    args: argparse.Namespace, data: Path, settings: Settings, console: Console
) -> dict[str, Any]:
    from stream.evaluate import nab

    total = _count_lines(sorted((data / "data").glob("*/*.csv")))
    hold = nab.HOLD if args.hold is None else args.hold
    with _progress(console, total, args.json) as advance:
        res, run = nab.evaluate(data, settings, advance, hold=hold)
    if args.export_nab_results:
        n = nab.export_results(run, Path(args.export_nab_results), "vigil")
        res["exported_files"] = n
    if not args.json:
        profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
        rows = [
            (
                p,
                f"{res[p]:.1f}",
                f"{res['no_hold'][p]:.1f}",
                f"{res['default_threshold'][p]:.1f}",
                f"{res[p + '_detected_windows']}/{res['windows']}",
                str(res[p + "_false_positives"]),
            )
            for p in profiles
        ]
        console.print(
            _table(
                f"NAB, {res['files']} files, {res['points']:,} points ({res['seconds']:.0f} s)",
                rows,
                (
                    "profile",
                    f"optimised (hold {hold})",
                    "optimised (no hold)",
                    "pipeline alarms",
                    "windows hit",
                    "FPs",
                ),
            )
        )
        console.print(
            "Published NAB scores (58 files): ARTime 74.9, HTM 70.5, CAD OSE 69.9, "
            "Skyline 58.2, Windowed Gaussian 39.6, Random 11.0, Null 0."
        )
    return res


def _run_skab(
    args: argparse.Namespace, data: Path, settings: Settings, console: Console
) -> dict[str, Any]:
    from stream.evaluate import skab

    paths = [p for p in data.rglob("*.csv") if "anomaly-free" not in p.parts]
    with _progress(console, _count_lines(paths), args.json) as advance:
        res = skab.evaluate(data, settings, advance)
    if not args.json:
        console.print(
            _table(
                f"SKAB outliers, {res['files']} files, {res['rows_scored']:,} rows scored",
                [
                    (
                        "vigil",
                        f"{res['f1']:.2f}",
                        f"{100 * res['far']:.2f}",
                        f"{100 * res['mar']:.2f}",
                    ),
                    ("Conv-AE (published)", "0.78", "13.55", "28.02"),
                    ("T²+Q PCA (published)", "0.76", "26.62", "24.92"),
                    ("Isolation forest (published)", "0.29", "2.56", "82.89"),
                ],
                ("method", "F1", "FAR %", "MAR %"),
            )
        )
    return res


def _run_synthetic(
    args: argparse.Namespace, settings: Settings, console: Console
) -> dict[str, Any]:
    from stream.evaluate import synthetic

    try:
        seeds = [int(x) for x in str(args.seeds).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"vigil evaluate: --seeds takes integers, got {args.seeds!r}") from None
    if not seeds:
        raise SystemExit("vigil evaluate: --seeds needs at least one seed")
    runs = []
    with _progress(console, len(seeds) * 10 * 3000 * 4, args.json) as advance:
        for seed in seeds:
            runs.append(synthetic.evaluate(settings, seed=seed, advance=advance))
    if len(runs) > 1:
        res = synthetic.pooled(runs)
        if not args.json:
            rows = [
                (
                    str(r["setup"]["seed"]),
                    f"{r['recall']:.3f}",
                    f"{r['precision']:.3f}",
                    str(r["episodes"]),
                )
                for r in runs
            ]
            rows.append(("mean", f"{res['recall']:.3f}", f"{res['precision']:.3f}", ""))
            console.print(
                _table(
                    "Simulated plant, per seed", rows, ("seed", "recall", "precision", "episodes")
                )
            )
        return res
    res = runs[0]
    if not args.json:
        rows = [
            (
                k,
                str(v["faults"]),
                f"{v['recall']:.2f}",
                "-" if v["median_delay_s"] is None else f"{v['median_delay_s']:.0f}",
            )
            for k, v in res["by_kind"].items()
        ]
        rows.append(("all", str(res["faults"]), f"{res['recall']:.2f}", f"{res['median_delay_s']}"))
        console.print(
            _table(
                f"Simulated plant: precision {res['precision']:.2f} of {res['episodes']} episodes",
                rows,
                ("fault kind", "faults", "recall", "median delay s"),
            )
        )
    return res


def _run_logs(args: argparse.Namespace, data: Path, console: Console) -> dict[str, Any]:
    # The log benchmarks have their own harnesses (not the sensor pipeline); run them.
    if args.benchmark == "masquerade":
        from stream.evaluate import masquerade

        res = masquerade.evaluate(data)
        res.pop("roc", None)
        rows = [
            ("vigil", f"{100 * res['hit_rate']:.1f}", f"{100 * res['false_alarm_rate']:.2f}"),
            ("Naive Bayes upd. (published)", "61.5", "1.3"),
            ("Schonlau et al. (published)", "34.2-69.3", "1.4-6.7"),
        ]
        header: tuple[str, ...] = ("method", "hit %", "false alarm %")
    elif args.benchmark == "deeplog":
        from stream.evaluate import deeplog

        res = deeplog.evaluate(data)
        rows = [("vigil", f"{res['recall']:.4f}", f"{res['false_positive_rate']:.4f}")]
        header = ("method", "recall", "FPR (held-out normal)")
    else:
        from stream.evaluate import loghub

        acc = loghub.parsing_accuracy(data.parent)
        res = {"grouping_accuracy": acc, "bgl_alerts": loghub.bgl_alerts(data.parent)}
        rows = [(s, f"{r['general']:.3f}", f"{r['published_drain']:.3f}") for s, r in acc.items()]
        header = ("system", "grouping accuracy", "Drain (published)")
    if not args.json:
        console.print(_table(f"{args.benchmark}", rows, header))
    return res


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; exit 2 when its data folder is missing."""
    console = Console(stderr=args.json)
    folder = FOLDERS[args.benchmark]
    data = Path(args.data) if args.data else default_data_dir(folder)
    if folder and not data.is_dir():
        print(f"vigil evaluate: data folder not found: {data}", file=sys.stderr)
        return 2
    settings = Settings.load(args.config)
    tune_gc(settings)
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "nab": lambda: _run_nab(args, data, settings, console),
        "skab": lambda: _run_skab(args, data, settings, console),
        "synthetic": lambda: _run_synthetic(args, settings, console),
    }
    run = runners.get(args.benchmark, lambda: _run_logs(args, data, console))
    res = run()
    res["config"] = args.config or "shipped defaults"
    if args.json:
        print(json.dumps(res, default=float))
    return 0
