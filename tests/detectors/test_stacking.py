"""Stacking across keys (:mod:`detectors.stacking`) gives each key its own result.

For every registered univariate detector that declares its channel state: keys with
different channel counts and different numbers of rows (NaN gaps included) run
stacked, and each key's outputs and state equal those of its own prequential run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from detectors import registry, stacking
from detectors.base import UnivariateDetector
from detectors.stacking import MIN_KEYS, clone, prequential_stacked

DEFAULT_SENSOR = {"members": [{"name": "forecast", "params": {"order": 2}}, {"name": "flatline"}]}


def _stackable() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for name in registry.available():
        cls = registry.get(name)
        if issubclass(cls, UnivariateDetector) and cls.channel_state:
            cases.append((name, {}))
    cases.append(("max_of", DEFAULT_SENSOR))
    return cases


def _keys(name: str, params: dict[str, Any], rng: np.random.Generator) -> list[Any]:
    keys = []
    for i in range(MIN_KEYS + 3):
        det = registry.get(name)(**params)
        d = 1 + i % 4
        warm = rng.normal(size=(150 + 10 * i, d)).round(1)  # rounded: flatline sees repeats
        warm[rng.random(warm.shape) < 0.05] = np.nan
        det.learn_many(warm)
        keys.append(det)
    return keys


@pytest.mark.parametrize(("name", "params"), _stackable(), ids=lambda v: str(v)[:20])
@pytest.mark.parametrize("surprise", [False, True])
def test_stacked_equals_separate(name: str, params: dict[str, Any], surprise: bool) -> None:
    rng = np.random.default_rng(3)
    keys = _keys(name, params, rng)
    matrices = []
    for det in keys:
        m = rng.normal(size=(int(rng.integers(1, 6)), det._stacked_channels())).round(1)
        m[0, 0] += 9.0  # an anomaly, so scores are not all alike
        m[rng.random(m.shape) < 0.1] = np.nan
        matrices.append(m)
    apart = clone(keys)
    step = "surprise_learn_many" if surprise else "score_learn_many"
    expected = [getattr(det, step)(m) for det, m in zip(apart, matrices, strict=True)]
    got = prequential_stacked(keys, matrices, surprise=surprise)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=0)
    for a, b in zip(apart, keys, strict=True):  # and the state each key keeps
        assert orjson.dumps(a.snapshot()) == orjson.dumps(b.snapshot())


def test_not_stackable_falls_back_to_each_key() -> None:
    rng = np.random.default_rng(0)
    fresh = [registry.get("forecast")() for _ in range(MIN_KEYS)]  # no sample seen yet
    matrices = [rng.normal(size=(3, 2)) for _ in fresh]
    expected = [det.score_learn_many(m) for det, m in zip(clone(fresh), matrices, strict=True)]
    got = prequential_stacked(fresh, matrices)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)


def test_width_must_match_channels() -> None:
    rng = np.random.default_rng(0)
    keys = _keys("robust_zscore", {}, rng)
    matrices = [rng.normal(size=(2, det._stacked_channels())) for det in keys]
    matrices[2] = rng.normal(size=(2, matrices[2].shape[1] + 1))  # one key's width is off
    with pytest.raises(ValueError, match="channels"):
        prequential_stacked(keys, matrices)


def test_a_fresh_key_runs_alone_and_the_rest_stay_stacked(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    keys = _keys("max_of", DEFAULT_SENSOR, rng)
    fresh = registry.get("max_of")(**DEFAULT_SENSOR)  # a device seen for the first time
    keys.insert(2, fresh)
    matrices = [rng.normal(size=(3, k._stacked_channels() or 2)) for k in keys]
    expected = [k.score_learn_many(m) for k, m in zip(clone(keys), matrices, strict=True)]
    sizes: list[int] = []
    real = stacking._run_stacked

    def spy(stacked: Any, parts: list[Any], mats: list[np.ndarray], surprise: bool) -> Any:
        sizes.append(len(parts))
        return real(stacked, parts, mats, surprise)

    monkeypatch.setattr(stacking, "_run_stacked", spy)
    got = prequential_stacked(keys, matrices)
    assert sizes == [len(keys) - 1]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=0)
    assert fresh._stacked_channels() == 2  # it has started


@pytest.mark.parametrize(("name", "params"), _stackable())
def test_a_fresh_detector_is_stackable_and_can_stack_after_its_first_row(
    name: str, params: dict[str, Any]
) -> None:
    det = registry.get(name)(**params)
    assert stacking.stackable(det)
    assert not stacking.can_stack(det, 3)  # not started: no channel state yet
    det.score_learn_many(np.ones((1, 3)))
    assert stacking.can_stack(det, 3)


def test_detectors_without_channel_state_are_not_stackable() -> None:
    plain = [
        registry.get(name)()
        for name in registry.available()
        if issubclass(registry.get(name), UnivariateDetector)
        and not registry.get(name).channel_state
        and name != "max_of"
    ]
    assert plain  # the check has something to check
    assert not any(stacking.stackable(d) for d in plain)
    mixed = registry.get("max_of")(members=[{"name": "robust_zscore"}, {"name": "cusum"}])
    assert not stacking.stackable(mixed)
