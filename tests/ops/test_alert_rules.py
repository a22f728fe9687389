"""Prometheus alert rules (ops/prometheus/rules/vigil.yml): structure, promtool, unit tests.

``promtool check rules`` validates the file, ``promtool test rules`` runs the unit tests
in ops/prometheus/rules/tests/ (each alert firing and not firing), and a few mutations
of the rules check that those unit tests actually fail when an alert is broken.
Without promtool the promtool tests skip; in CI (``CI`` set) they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "ops" / "prometheus" / "rules"
RULES = RULES_DIR / "vigil.yml"
RULE_TESTS_DIR = RULES_DIR / "tests"
OPERATIONS = REPO / "docs" / "OPERATIONS.md"
PROM_CONFIGS = [
    REPO / "ops" / "prometheus" / "prometheus.yml",
    REPO / "ops" / "prometheus" / "prometheus-local.yml",
]
METRIC_RE = re.compile(r"\bvigil_[A-Za-z0-9_]+")

REQUIRED_ALERTS = {
    "VigilWorkerDown",
    "VigilConsumerLagGrowing",
    "VigilDeadLetterRateHigh",
    "VigilCriticalIncidentsOpen",
    "VigilAnomalyStorm",
    "VigilProcessingLatencyHigh",
    "VigilStateRestoreCorrupt",
}
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        why = "promtool not installed (Debian package `prometheus`)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def _known_metric_names() -> set[str]:
    """Series names the worker's registry exposes (``x_total``, ``x_bucket``, ...)."""
    from stream import metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# -- structure (no promtool needed) ---------------------------------------------------
def test_required_alerts_exist() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    missing = REQUIRED_ALERTS - set(names)
    assert not missing, f"alerts missing from {RULES.name}: {sorted(missing)}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook"):
        assert isinstance(annotations.get(key), str) and annotations[key].strip(), (
            f"{rule['alert']}: no {key} annotation"
        )


def test_runbooks_point_at_operations_headings() -> None:
    assert OPERATIONS.is_file(), "docs/OPERATIONS.md (the runbook) is missing"
    anchors = {
        _github_anchor(m.group(1))
        for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", OPERATIONS.read_text(), re.M)
    }
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        path, _, anchor = runbook.partition("#")
        assert path == "docs/OPERATIONS.md", f"{rule['alert']}: runbook {runbook!r}"
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in OPERATIONS.md"


def test_rules_query_exported_metrics_and_the_scrape_job() -> None:
    known = _known_metric_names()
    jobs = {
        job["job_name"]
        for cfg in PROM_CONFIGS
        for job in yaml.safe_load(cfg.read_text())["scrape_configs"]
    }
    for rule in alert_rules():
        expr = rule["expr"]
        unknown = set(METRIC_RE.findall(expr)) - known
        assert not unknown, f"{rule['alert']} queries unknown metrics {sorted(unknown)}"
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs, f"{rule['alert']}: job {job!r} is not scraped (jobs: {jobs})"


def test_unit_tests_cover_each_alert_firing_and_not_firing() -> None:
    files = rule_test_files()
    assert files, f"no promtool unit tests in {RULE_TESTS_DIR}"
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in files:
        doc = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert not names - fires, f"alerts never tested firing: {sorted(names - fires)}"
    assert not names - quiet, f"alerts never tested not firing: {sorted(names - quiet)}"


# -- promtool -------------------------------------------------------------------------
@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout + proc.stderr


def _promtool_test(
    tool: str, files: list[Path], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "test", "rules", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.mark.prometheus
def test_promtool_unit_tests_pass() -> None:
    proc = _promtool_test(promtool(), rule_test_files())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "FAILED" not in out and "SUCCESS" in out, out


# Each mutation breaks one alert; the unit tests must notice.
MUTATIONS = {
    "worker-down-for": ("for: 1m", "for: 30m"),
    "lag-floor": ("> 1000", "> 100000"),
    "dead-letter-share": ("> 0.05", "> 0.5"),
    "latency-threshold": (") > 1\n", ") > 5\n"),
    "incidents-any-severity": ('severity="critical"}) > 0', "}) > 0"),
    "storm-factor": ("> 10 * sum by (kind)", "> 1000 * sum by (kind)"),
    "storm-floor": ("> 0.5\n", "> 0\n"),
    "restores-outcome": ('outcome="corrupt"}[15m]', "}[15m]"),
}


def _run_mutation(tool: str, mutation: str, root: Path) -> str | None:
    """Apply one mutation in ``root``; the problem found (None: the unit tests failed)."""
    old, new = MUTATIONS[mutation]
    text = RULES.read_text()
    if old not in text:
        return f"{old!r} not in {RULES.name}"
    (root / "rules").mkdir(parents=True)
    (root / "rules" / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copytree(RULE_TESTS_DIR, root / "rules" / "tests")
    check = subprocess.run(
        [tool, "check", "rules", str(root / "rules" / RULES.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check.returncode != 0:
        return f"mutated rules do not parse: {check.stdout}{check.stderr}"
    proc = _promtool_test(tool, sorted((root / "rules" / "tests").glob("*.yml")))
    if proc.returncode == 0:
        return "the unit tests still pass"
    return None


@pytest.mark.prometheus
def test_promtool_unit_tests_catch_broken_rules(tmp_path: Path) -> None:
    tool = promtool()
    with ThreadPoolExecutor(max_workers=min(len(MUTATIONS), os.cpu_count() or 2)) as pool:
        futures = {m: pool.submit(_run_mutation, tool, m, tmp_path / m) for m in MUTATIONS}
        problems = {m: f.result() for m, f in futures.items()}
    missed = {m: p for m, p in problems.items() if p is not None}
    assert not missed, f"mutations the unit tests did not catch: {missed}"
