"""End-to-end smoke tests of ``vigil evaluate`` on small subsets of the real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stream.cli import main
from stream.evaluate import skab, synthetic
from stream.settings import Settings

NAB_FILES = (
    "realKnownCause/ec2_request_latency_system_failure.csv",
    "artificialNoAnomaly/art_noisy.csv",
)


@pytest.fixture()
def small_nab(datasets_dir: Path, tmp_path: Path) -> Path:
    """Two NAB files with their labels and profiles in a temporary NAB folder."""
    src = datasets_dir / "nab"
    for rel in NAB_FILES:
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "data" / rel, tmp_path / "data" / rel)
    (tmp_path / "labels").mkdir()
    shutil.copy(src / "labels" / "combined_windows.json", tmp_path / "labels")
    shutil.copy(src / "profiles.json", tmp_path)
    return tmp_path


def test_nab_json_smoke(
    small_nab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "results"
    rc = main(
        ["evaluate", "nab", "--data", str(small_nab), "--json", "--export-nab-results", str(export)]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("standard", "reward_low_FP_rate", "reward_low_FN_rate", "default_threshold"):
        assert key in res
    assert res["files"] == 2
    assert res["windows"] == 3  # ec2_request_latency_system_failure has 3, art_noisy none
    # A real detector on a file with clear failures beats the null detector.
    assert res["standard"] > 0
    assert -100 <= res["default_threshold"]["standard"] <= 100
    out = export / "vigil" / "realKnownCause" / "vigil_ec2_request_latency_system_failure.csv"
    header = out.read_text().splitlines()[0]
    assert header == "timestamp,value,anomaly_score,label"


def test_nab_missing_data_folder(tmp_path: Path) -> None:
    assert main(["evaluate", "nab", "--data", str(tmp_path / "nope")]) == 2


def test_skab_two_files(datasets_dir: Path, tmp_path: Path) -> None:
    for name in ("1.csv", "2.csv"):
        (tmp_path / "valve1").mkdir(exist_ok=True)
        shutil.copy(datasets_dir / "skab" / "valve1" / name, tmp_path / "valve1" / name)
    settings = Settings.load(Path(__file__).resolve().parents[2] / "configs" / "skab.yaml")
    res = skab.evaluate(tmp_path, settings)
    assert res["files"] == 2
    assert res["rows_scored"] == sum(
        len((tmp_path / "valve1" / n).read_text().splitlines()) - 1 - skab.TRAIN_ROWS
        for n in ("1.csv", "2.csv")
    )
    assert 0.0 <= res["far"] <= 1.0 and 0.0 <= res["mar"] <= 1.0
    # The detector must find some of the fault rows, and not flag everything (valve1-2
    # holds a temperature dip and a timestamp gap: most of its normal rows are flagged).
    assert res["tp"] > 0 and res["far"] < 0.9


def test_skab_confusion_by_hand() -> None:
    import numpy as np

    pred = np.array([1, 1, 0, 0, 1], bool)
    truth = np.array([1, 0, 1, 0, 1], bool)
    got = skab.confusion(pred, truth)
    assert got["tp"] == 2 and got["fp"] == 1 and got["fn"] == 1 and got["tn"] == 1
    assert got["far"] == pytest.approx(0.5)
    assert got["mar"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(2 / 3)


def test_synthetic_small_run_detects_spikes() -> None:
    res = synthetic.evaluate(Settings.load(None), n_devices=3, n_ticks=800, n_faults=8, seed=1)
    assert res["faults"] == 8
    assert 0.0 <= res["precision"] <= 1.0
    assert res["recall"] > 0.3
    assert set(res["by_kind"]) <= {
        "spike",
        "level_shift",
        "drift",
        "stuck",
        "cross_talk",
        "decoupling",
    }


def test_synthetic_seeds_are_pooled_as_means_and_summed_faults() -> None:
    settings = Settings.load(None)
    runs = [
        synthetic.evaluate(settings, n_devices=3, n_ticks=800, n_faults=8, seed=seed)
        for seed in (1, 2)
    ]
    pooled = synthetic.pooled(runs)
    assert pooled["seeds"] == [1, 2] and pooled["faults"] == 16
    assert pooled["recall"] == pytest.approx((runs[0]["recall"] + runs[1]["recall"]) / 2)
    assert pooled["precision"] == pytest.approx((runs[0]["precision"] + runs[1]["precision"]) / 2)
    assert sum(k["faults"] for k in pooled["by_kind"].values()) == 16
    assert sum(k["detected"] for k in pooled["by_kind"].values()) == round(
        sum(r["recall"] * r["faults"] for r in runs)
    )
    with pytest.raises(ValueError):
        synthetic.pooled([])


def test_synthetic_cli_rejects_bad_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "synthetic", "--seeds", "1,x"])
    assert "--seeds takes integers" in str(exc.value.code)
