"""A :class:`~detectors.stack_pool.StackPool` keeps keys' state stacked between batches.

Over several batches, each key's outputs and state equal those of its own prequential
run, also when between batches a key learns on its own, adds a channel, is replaced by
a restored copy or is dropped; a failed run leaves every key's state as it was.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import orjson
import pytest

from detectors import registry
from detectors.base import UnivariateDetector
from detectors.stack_pool import StackPool
from detectors.stacking import MIN_KEYS, clone
from tests.detectors.test_stacking import DEFAULT_SENSOR, _keys, _stackable


def _state(det: UnivariateDetector) -> bytes:
    return orjson.dumps(det.snapshot())


def _batch(keys: list[Any], rng: np.random.Generator, rows: int | None = None) -> list[np.ndarray]:
    out = []
    for det in keys:
        n = rows or int(rng.integers(1, 5))
        m = rng.normal(size=(n, det._stacked_channels() or 2)).round(1)
        m[rng.random(m.shape) < 0.1] = np.nan
        out.append(m)
    out[0][0, 0] = 9.0  # an anomaly, so scores are not all alike
    return out


def _check(
    pool: StackPool, keys: list[Any], apart: list[Any], batch: list[np.ndarray], surprise: bool
) -> None:
    step = "surprise_learn_many" if surprise else "score_learn_many"
    expected = [getattr(det, step)(m) for det, m in zip(apart, batch, strict=True)]
    got = pool.prequential(keys, batch, surprise=surprise)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=0)
    for a, b in zip(apart, keys, strict=True):
        assert _state(a) == _state(b)


@pytest.mark.parametrize(("name", "params"), _stackable(), ids=lambda v: str(v)[:20])
@pytest.mark.parametrize("surprise", [False, True])
def test_batches_through_a_pool_equal_separate_runs(
    name: str, params: dict[str, Any], surprise: bool
) -> None:
    rng = np.random.default_rng(7)
    keys = _keys(name, params, rng)
    apart = clone(keys)
    pool = StackPool()
    for _ in range(3):
        _check(pool, keys, apart, _batch(keys, rng), surprise)
    assert len(pool) == len(keys)
    # Between batches: one key learns on its own (it replaces its arrays), one adds a
    # channel, one is replaced by a restored copy. Each is taken in again as it is now.
    alone = rng.normal(size=(4, keys[1]._stacked_channels()))
    for det in (keys[1], apart[1]):
        det.learn_many(alone)
    try:
        keys[2].grow(keys[2]._stacked_channels() + 1)
    except NotImplementedError:  # it cannot add channels (callers rebuild it)
        pass
    else:
        apart[2].grow(apart[2]._stacked_channels() + 1)
    keys[3] = type(keys[3]).restore(keys[3].snapshot())
    for _ in range(3):
        _check(pool, keys, apart, _batch(keys, rng), surprise)
    assert len(pool) == len(keys)


def test_state_replaced_from_outside_is_noticed() -> None:
    """The pool's check is a flag the detector raises as it replaces a state array or a
    combination's member, by any path; copies of a pooled key are not in the pool."""
    rng = np.random.default_rng(3)
    keys = _keys("max_of", DEFAULT_SENSOR, rng)
    apart = clone(keys)
    pool = StackPool()
    _check(pool, keys, apart, _batch(keys, rng), surprise=True)
    forecaster = keys[0].members[0]
    assert forecaster._pool_mark is not None and keys[0]._pool_mark is forecaster._pool_mark
    # the same object set again (an augmented assignment does that) is no replacement
    forecaster._mean = forecaster._mean
    assert not forecaster._pool_mark.stale
    # a state array replaced, in place of the key's own learning
    for det in (keys[0], apart[0]):
        member = det.members[0]
        member._mean = member._mean + 0.5
    # a member replaced by a restored copy of itself that learned on its own
    alone = rng.normal(size=(3, keys[1]._stacked_channels()))
    for det in (keys[1], apart[1]):
        member = type(det.members[1]).restore(det.members[1].snapshot())
        member.learn_many(alone)
        det.members = (det.members[0], member)
    copy = clone([keys[2]])[0]
    assert copy._pool_mark is None and copy.members[0]._pool_mark is None
    for _ in range(2):
        _check(pool, keys, apart, _batch(keys, rng), surprise=True)
    assert not keys[0]._pool_mark.stale and keys[1].members[1]._pool_mark is keys[1]._pool_mark


def test_keys_that_are_gone_are_forgotten_and_their_rows_reclaimed() -> None:
    rng = np.random.default_rng(1)
    keys = [k for _ in range(6) for k in _keys("max_of", DEFAULT_SENSOR, rng)]
    pool = StackPool()
    pool.prequential(keys, _batch(keys, rng, rows=1))
    used = pool.slots_in_use
    assert len(pool) == len(keys) and used == sum(k._stacked_channels() for k in keys)
    del keys[: len(keys) // 2]
    gc.collect()
    assert len(pool) == len(keys)
    newcomers = [k for _ in range(8) for k in _keys("max_of", DEFAULT_SENSOR, rng)]
    apart = clone(keys + newcomers)
    _check(pool, keys + newcomers, apart, _batch(keys + newcomers, rng), surprise=True)
    assert pool.slots_in_use == sum(k._stacked_channels() for k in keys + newcomers)
    assert pool.capacity >= pool.slots_in_use


def test_a_failed_run_leaves_every_key_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    keys = _keys("max_of", DEFAULT_SENSOR, rng)
    pool = StackPool()
    pool.prequential(keys, _batch(keys, rng))
    before = [_state(k) for k in keys]
    twin = pool._twin
    assert twin is not None

    def boom(*_args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(twin, "_prequential", boom)
    with pytest.raises(RuntimeError):
        pool.prequential(keys, _batch(keys, rng))
    assert [_state(k) for k in keys] == before


def test_too_few_keys_run_on_their_own_and_other_types_are_refused() -> None:
    rng = np.random.default_rng(4)
    keys = _keys("robust_zscore", {}, rng)[: MIN_KEYS - 1]
    apart = clone(keys)
    pool = StackPool()
    _check(pool, keys, apart, _batch(keys, rng), surprise=False)
    assert len(pool) == 0
    many = _keys("robust_zscore", {}, rng)
    pool.prequential(many, _batch(many, rng))
    other = _keys("forecast", {}, rng)
    with pytest.raises(ValueError, match="type"):
        pool.prequential(other, _batch(other, rng))


def test_a_width_that_disagrees_with_the_key_is_reported() -> None:
    rng = np.random.default_rng(0)
    keys = _keys("robust_zscore", {}, rng)
    pool = StackPool()
    pool.prequential(keys, _batch(keys, rng))
    batch = _batch(keys, rng)
    batch[2] = rng.normal(size=(2, batch[2].shape[1] + 1))
    with pytest.raises(ValueError, match="channels"):
        pool.prequential(keys, batch)


def test_a_fresh_key_starts_on_its_own_and_joins_once_started() -> None:
    rng = np.random.default_rng(5)
    keys = _keys("max_of", DEFAULT_SENSOR, rng)
    fresh = registry.get("max_of")(**DEFAULT_SENSOR)
    keys.append(fresh)
    apart = clone(keys)
    pool = StackPool()
    _check(pool, keys, apart, _batch(keys, rng), surprise=True)
    assert len(pool) == len(keys) - 1  # it had no state to stack
    _check(pool, keys, apart, _batch(keys, rng), surprise=True)
    assert len(pool) == len(keys)
