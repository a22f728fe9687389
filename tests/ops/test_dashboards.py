"""Grafana dashboards: structure, and every vigil_* metric they query exists.

The set of known metric names is read from ``stream.metrics`` (the worker's
Prometheus collectors), so a renamed or removed metric breaks this test rather
than silently leaving an empty panel.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "ops" / "grafana" / "dashboards"
METRICS_MODULE_FILE = REPO / "stream" / "metrics.py"
METRIC_RE = re.compile(r"\bvigil_[A-Za-z0-9_]+")

# Sample-name suffixes that prometheus_client exposes for each metric type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        if panel.get("type") == "row":
            yield from iter_panels(panel.get("panels", []))
        else:
            yield panel


def _family_names(name: str, typ: str) -> set[str]:
    """Series names a scrape shows for a family (a counter `x` is only `x_total`, ...)."""
    base = name[: -len("_total")] if typ == "counter" and name.endswith("_total") else name
    if typ == "info" and base.endswith("_info"):
        base = base[: -len("_info")]
    return {base + suffix for suffix in _SUFFIXES.get(typ, ("",))}


def _names_from_registry(registry: Any) -> set[str]:
    names: set[str] = set()
    try:
        for family in registry.collect():
            names |= _family_names(family.name, family.type)
            names.update(s.name for s in family.samples)
    except Exception:  # a custom collector failing is not what this test is about
        pass
    return names


def exported_metric_names() -> set[str]:
    """Names of the Prometheus metrics defined in stream/metrics.py."""
    if not METRICS_MODULE_FILE.is_file():
        pytest.fail(
            f"{METRICS_MODULE_FILE.relative_to(REPO)} does not exist: the dashboards query vigil_* "
            "metrics, and the list of metrics the worker exports is read from that module"
        )
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

    module = importlib.import_module("stream.metrics")
    names: set[str] = set()
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            names |= _family_names(value._name, value._type)
        elif isinstance(value, CollectorRegistry):
            names |= _names_from_registry(value)
        elif (
            inspect.isclass(value)
            and value.__module__ == module.__name__
            and value.__name__.endswith("Metrics")
        ):
            # Metrics bundled in a class that takes the registry to register into.
            try:
                params = inspect.signature(value).parameters
            except (TypeError, ValueError):
                continue
            if "registry" in params:
                registry = CollectorRegistry()
                try:
                    value(registry=registry)
                except Exception:
                    continue
                names |= _names_from_registry(registry)
    names |= {n for n in _names_from_registry(REGISTRY) if n.startswith("vigil_")}
    return {n for n in names if n.startswith("vigil_")}


def test_there_are_dashboards() -> None:
    assert dashboard_files(), f"no dashboards in {DASHBOARD_DIR}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert isinstance(dash.get("uid"), str) and dash["uid"], "dashboard needs a uid"
    assert len(dash["uid"]) <= 40, "Grafana uids are at most 40 characters"
    assert isinstance(dash.get("title"), str) and dash["title"], "dashboard needs a title"
    panels = list(iter_panels(dash.get("panels") or []))
    assert panels, "dashboard has no panels"
    ids = [p.get("id") for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in panels:
        title = panel.get("title") or f"panel {panel.get('id')}"
        assert "gridPos" in panel, f"{title}: no gridPos"
        targets = panel.get("targets")
        assert targets, f"{title}: no targets"
        for target in targets:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), (
                f"{title}: target without expr"
            )


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids)), uids


def _dashboard_exprs() -> list[tuple[str, str, str]]:
    out = []
    for path in dashboard_files():
        dash = json.loads(path.read_text())
        for panel in iter_panels(dash.get("panels") or []):
            for target in panel.get("targets") or []:
                out.append((path.name, panel.get("title", ""), target.get("expr", "")))
    return out


def test_dashboard_metrics_are_exported() -> None:
    known = exported_metric_names()
    assert known, "stream/metrics.py defines no vigil_* Prometheus metrics"
    unknown = sorted(
        {
            f"{name} ({file}: {title})"
            for file, title, expr in _dashboard_exprs()
            for name in METRIC_RE.findall(expr)
            if name not in known
        }
    )
    assert not unknown, (
        "dashboards query metrics that stream/metrics.py does not export:\n  "
        + "\n  ".join(unknown)
        + f"\nknown: {sorted(known)}"
    )


@pytest.mark.prometheus
def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    import yaml

    rules = [
        {"record": f"vigil_dashboard_check:expr{i}", "expr": expr}
        for i, (_, _, expr) in enumerate(_dashboard_exprs())
    ]
    rule_file = tmp_path / "exprs.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
