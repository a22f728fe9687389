"""Per-key SPOT thresholds on surprises: the alert rate follows the target where the
detector's own model is wrong (a square wave's edges are "impossible" to a forecaster)."""

from __future__ import annotations

import numpy as np
import orjson

from stream.decide import Episodes, Thresholds, spot_refit_every
from stream.embedded import run_embedded
from stream.pipeline import Pipeline
from stream.settings import CausalitySpec, Settings


def square_wave_messages(n: int = 8000) -> list[tuple[str, bytes, bytes]]:
    rng = np.random.default_rng(4)
    t = np.arange(n)
    level = np.where((t // 48) % 2 == 0, 20.0, 80.0) + rng.normal(0.0, 1.0, n)
    return [
        (
            "sensors",
            b"wave",
            orjson.dumps({"device": "wave", "sensor": "v", "ts": float(i), "value": float(v)}),
        )
        for i, v in enumerate(level)
    ]


def alert_rate(policy: str, rate: float) -> float:
    settings = Settings.load(
        warning_rate=rate,
        critical_rate=rate / 100,
        thresholds=policy,
        spot_init=1000,
        warmup=100,
        cooldown=1,
        causality=CausalitySpec(enabled=False),
    )
    result = run_embedded(Pipeline(settings), square_wave_messages(), 1000)
    opened = sum(1 for a in result.anomalies if (a.details or {}).get("action") == "open")
    scored = 8000 - 100 - (settings.spot_init if policy == "spot" else 0)
    return opened / scored


def test_spot_on_surprises_holds_the_rate_where_fixed_thresholds_flood() -> None:
    fixed = alert_rate("rate", 3e-3)
    per_key = alert_rate("spot", 3e-3)
    # every edge is beyond any fixed threshold: about one alert per 48 samples
    assert fixed > 5 * 3e-3
    # per-key SPOT learns that edges are routine: no flood. It under-alerts here (about
    # 0.25x: the edges are one lump of equal surprises, docs/QUALITY.md), never over.
    assert 0 < per_key < 2 * 3e-3, per_key


def test_levels_stay_finite_when_the_asked_rate_exceeds_the_peak_rate(caplog) -> None:  # type: ignore[no-untyped-def]
    # a low extremal index asks for rate / theta (here up to 0.2): above the peak rate
    # the level is t, not an extrapolation far below it (which once overflowed)
    with caplog.at_level("ERROR"):
        for policy in ("spot", "auto"):
            assert alert_rate(policy, 1e-2) < 2e-2 * 2
    assert "processing failed" not in caplog.text


def test_extremal_index_counts_episodes_per_exceedance() -> None:
    ep = Episodes()
    th = Thresholds(0.9, 0.99)
    assert ep.extremal_index == 1.0
    for i, score in enumerate([0.95, 0.95, 0.95, 0.1, 0.95, 0.95, 0.95, 0.1]):
        ep.step(score, float(i), th, warmup=0, cooldown=1, key="k")
    assert (ep.exceeded, ep.opened) == (6, 2)
    assert abs(ep.extremal_index - 3 / 7) < 1e-12
    again = Episodes.from_dict(ep.to_dict())
    assert (again.exceeded, again.opened) == (6, 2)


def test_events_judged_on_surprise_say_so() -> None:
    msgs = square_wave_messages()
    body = orjson.loads(msgs[6000][2])
    body["value"] += 500.0  # far beyond any edge: scores 1.0, surprise says how far
    msgs[6000] = (msgs[6000][0], msgs[6000][1], orjson.dumps(body))
    settings = Settings.load(
        warning_rate=1e-3, critical_rate=1e-5, causality=CausalitySpec(enabled=False)
    )
    result = run_embedded(Pipeline(settings), msgs, 1000)
    late = [a for a in result.anomalies if a.event_ts >= 6000.0 and a.details]
    hit = [a for a in late if a.event_ts == 6000.0]
    assert hit, [(a.event_ts, a.reason) for a in late]
    d = hit[0].details or {}
    assert d["surprise"] >= d["surprise_threshold"] > 0
    assert "surprise" in (hit[0].reason or "")


def test_a_keys_spot_refits_when_a_tenth_of_its_kept_peaks_are_new() -> None:
    # a fit costs O(max_peaks); refitting every 10 peaks of 250 spent a fifth of the
    # worker's time past the warm-ups on fits (docs/BENCHMARKS.md)
    assert spot_refit_every(250) == 25
    assert spot_refit_every(1000) == 100
    assert spot_refit_every(40) == 10  # never more often than SPOT's own default
    for max_peaks in (40, 250):
        settings = Settings.load(
            thresholds="spot",
            spot_init=1000,
            spot_max_peaks=max_peaks,
            causality=CausalitySpec(enabled=False),
        )
        pipeline = Pipeline(settings)
        run_embedded(pipeline, square_wave_messages(3000), 1000)
        spots = [sp for m in pipeline.devices.values() for sp in m.spots.values()]
        assert spots and all(sp.calibrated for sp in spots)
        assert {sp.refit_every for sp in spots} == {spot_refit_every(max_peaks)}
