"""Grafana dashboards: structure, and every vigil_* metric they query exists.

The set of known metric names is read from ``stream.metrics`` (the worker's
Prometheus collectors), so a renamed or removed metric breaks this test rather
than silently leaving an empty panel.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
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
# $var, ${var} and ${var:format}; not $1 (a label_replace group reference).
VAR_RE = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?::[^}]*)?\}|([A-Za-z_]\w*))")
# Grafana's built-in interval variables, as a typical dashboard renders them.
BUILTIN_VARS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "15000",
}

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


def render_vars(expr: str) -> str:
    """``expr`` as Grafana sends it: built-in intervals filled, other variables as ``.*``.

    Dashboard variables only appear inside regex matchers (``label=~"$var"``), where an
    "All" selection is ``.*``.
    """
    return VAR_RE.sub(lambda m: BUILTIN_VARS.get(m.group(1) or m.group(2), ".*"), expr)


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
            names |= _family_names(value._name, str(value._type))
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
                    value(registry=registry)  # type: ignore[call-arg]
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
    """(file, panel or annotation title, expr) of every query, Grafana variables rendered."""
    out = []
    for path in dashboard_files():
        dash = json.loads(path.read_text())
        for panel in iter_panels(dash.get("panels") or []):
            for target in panel.get("targets") or []:
                out.append((path.name, panel.get("title", ""), render_vars(target.get("expr", ""))))
        for ann in (dash.get("annotations") or {}).get("list", []):
            if ann.get("expr"):
                out.append((path.name, f"annotation {ann.get('name')}", render_vars(ann["expr"])))
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


# -- every dashboard: datasources, variables, layout ---------------------------------
DATASOURCES_DIR = REPO / "ops" / "grafana" / "provisioning" / "datasources"
COMPOSE = REPO / "docker-compose.yml"


def _provisioned_datasource_uids() -> set[str]:
    import yaml

    uids: set[str] = set()
    for path in DATASOURCES_DIR.glob("*.y*ml"):
        for ds in yaml.safe_load(path.read_text()).get("datasources") or []:
            uids.add(ds["uid"])
    return uids


def _load(name: str) -> dict[str, Any]:
    path = DASHBOARD_DIR / name
    assert path.is_file(), f"dashboard {name} is missing"
    return dict(json.loads(path.read_text()))


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return list(iter_panels(dash.get("panels") or []))


def _exprs(panel: dict[str, Any]) -> str:
    return "\n".join(t.get("expr", "") for t in panel.get("targets") or [])


def test_dashboard_titles_are_unique() -> None:
    titles = [json.loads(p.read_text())["title"] for p in dashboard_files()]
    assert len(titles) == len(set(titles)), titles


def test_expected_dashboards_exist() -> None:
    uids = {json.loads(p.read_text())["uid"] for p in dashboard_files()}
    assert {"vigil-overview", "vigil-device", "vigil-causal", "vigil-security"} <= uids, uids


def test_compose_home_dashboard_exists() -> None:
    import yaml

    env = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["environment"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    prefix = "/var/lib/grafana/dashboards/"
    assert home.startswith(prefix), home
    assert (DASHBOARD_DIR / home[len(prefix) :]).is_file(), home


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_panels_query_the_provisioned_datasource(path: Path) -> None:
    uids = _provisioned_datasource_uids()
    assert uids, f"no datasources provisioned in {DATASOURCES_DIR}"
    dash = json.loads(path.read_text())
    for panel in _panels(dash):
        title = panel.get("title")
        ds = panel.get("datasource") or {}
        assert ds.get("uid") in uids, f"{title}: datasource {ds} is not provisioned ({uids})"
        for target in panel["targets"]:
            tds = target.get("datasource") or ds
            assert tds.get("uid") in uids, f"{title}: target datasource {tds}"
            assert target.get("refId"), f"{title}: target without refId"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{title}: duplicate refIds {refs}"
    for ann in dash.get("annotations", {}).get("list", []):
        if ann.get("expr"):
            assert (ann.get("datasource") or {}).get("uid") in uids, ann.get("name")


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_variables_used_are_defined(path: Path) -> None:
    dash = json.loads(path.read_text())
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    texts = [_exprs(p) for p in _panels(dash)]
    texts += [a.get("expr", "") for a in dash.get("annotations", {}).get("list", [])]
    texts += [v.get("definition", "") for v in dash.get("templating", {}).get("list", [])]
    used = {m.group(1) or m.group(2) for t in texts for m in VAR_RE.finditer(t)}
    undefined = {u for u in used if u not in defined and not u.startswith("__")}
    assert not undefined, f"undefined variables {sorted(undefined)} (defined: {sorted(defined)})"
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            for name in METRIC_RE.findall(var.get("definition", "")):
                assert name in exported_metric_names(), f"variable {var['name']}: {name}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_panels_do_not_overlap(path: Path) -> None:
    dash = json.loads(path.read_text())
    cells: dict[tuple[int, int], str] = {}
    for panel in dash.get("panels") or []:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{panel.get('title')}: {pos}"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel.get("title", ""))
                assert other == panel.get("title", ""), f"{panel.get('title')} overlaps {other}"


# -- what each dashboard must show ----------------------------------------------------
def test_overview_covers_the_fleet() -> None:
    exprs = "\n".join(_exprs(p) for p in _panels(_load("vigil-overview.json")))
    for needed in (
        "vigil_events_total",
        "vigil_anomalies_total",
        "vigil_incidents_open",
        "vigil_consumer_lag",
        "histogram_quantile(0.50, sum by (le) (rate(vigil_processing_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(vigil_processing_seconds_bucket",
        "sum by (reason) (rate(vigil_dead_letter_total",
        "vigil_active_keys",
    ):
        assert needed in exprs, f"overview does not show {needed}"
    assert "sum by (kind, severity)" in exprs


def test_device_dashboard_explains_missing_per_device_series() -> None:
    dash = _load("vigil-device.json")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert "device" in variables, "the device view needs a `device` variable"
    panels = _panels(dash)
    by_detector = [p for p in panels if "by (detector" in _exprs(p)]
    assert by_detector, "no anomaly rate by detector"
    for panel in panels:
        assert "anomalies topic" in panel.get("description", ""), (
            f"{panel['title']}: the description must say where per-device series come from"
        )
    assert any(a.get("expr") for a in dash["annotations"]["list"]), "no anomaly annotations"


def test_security_dashboard_uses_log_anomalies_by_detector() -> None:
    dash = _load("vigil-security.json")
    panels = _panels(dash)
    assert any('kind="log"' in _exprs(p) and "by (detector" in _exprs(p) for p in panels)
    assert "no per-user" in dash["description"].lower()
    assert not any("user" in m for p in panels for m in re.findall(r"by \(([^)]*)\)", _exprs(p)))


def _node_graph() -> dict[str, Any]:
    panels = [p for p in _panels(_load("vigil-causal.json")) if p["type"] == "nodeGraph"]
    assert len(panels) == 1, "the causal dashboard needs one nodeGraph panel"
    return panels[0]


def test_causal_dashboard_node_graph_frames() -> None:
    panel = _node_graph()
    targets = {t["refId"]: t for t in panel["targets"]}
    # Grafana's node graph takes frames by refId "nodes"/"edges" and fields by *name*.
    assert set(targets) == {"nodes", "edges"}, set(targets)
    for target in targets.values():
        assert "vigil_causal_edge_strength" in target["expr"]
        assert target.get("format") == "table" and target.get("instant") is True
    for label in ('"id"', '"source"', '"target"'):
        assert label in targets["edges"]["expr"], f"edges query does not make {label}"
    for label in ('"id"', '"title"'):
        assert label in targets["nodes"]["expr"], f"nodes query does not make {label}"
    calcs = [t for t in panel.get("transformations", []) if t["id"] == "calculateField"]
    assert any(t["options"].get("alias") == "mainstat" for t in calcs), (
        "the value must become a field *named* mainstat (a displayName rename is ignored)"
    )


@pytest.mark.prometheus
def test_causal_node_graph_queries_yield_nodes_and_edges(tmp_path: Path) -> None:
    """Run the nodeGraph queries on sample edges with promtool: ids line up, stats right."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool not installed (Debian package `prometheus`)")
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    import yaml

    panel = _node_graph()
    exprs = {t["refId"]: render_vars(t["expr"]) for t in panel["targets"]}
    metric = 'vigil_causal_edge_strength{job="vigil-worker", instance="w1:6066", group="%s", cause="%s", effect="%s"}'
    edges = {
        ("line-a", "flow", "pressure"): 0.5,
        ("line-a", "pressure", "temp"): 0.25,
        ("line-b", "flow", "pressure"): 0.125,
    }
    series = [{"series": metric % key, "values": f"{v}x5"} for key, v in edges.items()]
    exp_edges = [
        {
            "labels": "{"
            + f'id="{g}/{c} -> {g}/{e}", source="{g}/{c}", target="{g}/{e}", '
            + f'group="{g}", cause="{c}", effect="{e}", detail__group="{g}"'
            + "}",
            "value": v,
        }
        for (g, c, e), v in edges.items()
    ]
    exp_nodes = [
        {"labels": '{id="line-a/flow", title="flow", subtitle="line-a"}', "value": 0.5},
        {"labels": '{id="line-a/pressure", title="pressure", subtitle="line-a"}', "value": 0.25},
        {"labels": '{id="line-a/temp", title="temp", subtitle="line-a"}', "value": 0},
        {"labels": '{id="line-b/flow", title="flow", subtitle="line-b"}', "value": 0.125},
        {"labels": '{id="line-b/pressure", title="pressure", subtitle="line-b"}', "value": 0},
    ]
    (tmp_path / "empty.yml").write_text("groups: []\n")
    test = {
        "rule_files": ["empty.yml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {"expr": exprs["edges"], "eval_time": "3m", "exp_samples": exp_edges},
                    {"expr": exprs["nodes"], "eval_time": "3m", "exp_samples": exp_nodes},
                ],
            }
        ],
    }
    (tmp_path / "node_graph_test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run(
        [promtool, "test", "rules", "node_graph_test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
