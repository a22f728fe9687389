"""Granger checks stacked across devices give each device's own findings and state."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from detectors.causality import CausalityFinding, GrangerMonitor
from detectors.causality import stacked as stacked_module
from detectors.causality.granger import pairwise_granger
from detectors.causality.stacked import update_stacked
from tests.detectors.test_granger_plants import PARAMS, SENSORS, plant

N_ROWS = 4200


def _streams() -> list[np.ndarray]:
    """Eight pumps: decouplings (sequential and window tests), a lying sensor (the
    residual check), rows with a hole, and two that start their warm-up later."""
    out = []
    for seed in range(8):
        fault = {1: 1, 2: 3, 5: 2}.get(seed)
        y = plant(seed, N_ROWS, decouple=fault, t0=3000 if fault is not None else 0)
        if seed == 3:
            y[3300:3320, 2] += 8.0  # pressure reads high while its driver is calm
        if seed == 4:
            y[2600:2610, 0] = np.nan  # rows with a hole are skipped
        if seed in (6, 7):
            y = y[600:]  # later starters: still in their warm-up when the others are not
        out.append(y)
    return out


def _batches(rng: np.random.Generator, n: int, count: int = 1000) -> list[tuple[int, int]]:
    """``count`` uneven cuts of ``n`` rows (a batch brings a device none to a dozen
    rows), so every device has rows in nearly every batch until the last."""
    edges = np.concatenate([[0], np.sort(rng.integers(0, n + 1, count - 1)), [n]])
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _state(mon: GrangerMonitor) -> dict[str, object]:
    return mon._get_state()


def _assert_same_state(a: object, b: object, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            _assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6), path
    else:
        assert a == b, path


def test_stacked_equals_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = _streams()
    apart = [GrangerMonitor(SENSORS, **PARAMS) for _ in streams]
    together = [GrangerMonitor(SENSORS, **PARAMS) for _ in streams]
    stacks: list[int] = []
    tests: list[int] = []  # monitors whose structural test ran with the others'
    real_stack = stacked_module._Stack

    class CountingStack(real_stack):  # type: ignore[misc, valid-type]
        def run(self, rows, found):  # type: ignore[no-untyped-def]
            stacks.append(len(self.monitors))
            super().run(rows, found)

        def _structure_tests(self, due):  # type: ignore[no-untyped-def]
            out = super()._structure_tests(due)
            tests.append(len(out))
            return out

    monkeypatch.setattr(stacked_module, "_Stack", CountingStack)
    exact: list[bool] = []  # a stacked structural test equals the monitor's own
    real_check = GrangerMonitor._check_structure

    def checking(self: GrangerMonitor, full: bool, tested: Any = None) -> Any:
        if tested is not None and tested.f is not None:
            c, e = tested.flat // self.d, tested.flat % self.d
            own = pairwise_granger(self._short, c, e, self.ridge)
            exact.append(
                np.array_equal(tested.f, own.f, equal_nan=True)
                and np.array_equal(tested.r2, own.partial_r2, equal_nan=True)
            )
        return real_check(self, full, tested)

    monkeypatch.setattr(GrangerMonitor, "_check_structure", checking)
    rng = np.random.default_rng(0)
    cuts = [_batches(rng, len(y)) for y in streams]
    expected: list[list[tuple[int, CausalityFinding]]] = [[] for _ in streams]
    got: list[list[tuple[int, CausalityFinding]]] = [[] for _ in streams]
    for b in range(len(cuts[0])):
        parts = [y[c[b][0] : c[b][1]] for y, c in zip(streams, cuts, strict=True)]
        starts = [c[b][0] for c in cuts]
        for n, (mon, part) in enumerate(zip(apart, parts, strict=True)):
            for i, row in enumerate(part):
                expected[n].extend((starts[n] + i, f) for f in mon.update(row))
        for n, found in enumerate(update_stacked(together, parts)):
            got[n].extend((starts[n] + i, f) for i, f in found)
    assert max(stacks) == len(streams)  # all ran stacked once the late ones warmed up
    assert max(tests) >= 2  # and their structural tests, those that fell due together
    assert exact and all(exact)  # to the bit
    kinds = {f.kind for found in expected for _, f in found}
    assert {"decoupling", "residual"} <= kinds  # the checks were exercised
    for n in range(len(streams)):
        assert [(i, f.kind, f.cause, f.effect, f.ts_index) for i, f in got[n]] == [
            (i, f.kind, f.cause, f.effect, f.ts_index) for i, f in expected[n]
        ], f"device {n}"
        for (_, f), (_, g) in zip(got[n], expected[n], strict=True):
            assert f.score == pytest.approx(g.score, abs=1e-9)
        _assert_same_state(_state(together[n]), _state(apart[n]))
        # each monitor owns its arrays again (no view keeps the stack alive)
        assert together[n]._seq.base is None and together[n]._dec_armed.base is None


def test_too_few_alike_run_one_by_one() -> None:
    y = plant(0, 2400)
    mons = [GrangerMonitor(SENSORS, **PARAMS) for _ in range(stacked_module.MIN_MONITORS - 1)]
    found = update_stacked(mons, [y] * len(mons))
    assert all(m.warmed_up for m in mons)
    assert len(found) == len(mons)


def test_rows_of_the_wrong_width_are_refused() -> None:
    mon = GrangerMonitor(SENSORS, **PARAMS)
    with pytest.raises(ValueError, match="rows of 4 values"):
        update_stacked([mon], [np.zeros((3, 3))])
    with pytest.raises(ValueError, match="one matrix per monitor"):
        update_stacked([mon], [])


@pytest.mark.parametrize("commit", ["5d7e17a", "21c4527"])
def test_restored_older_snapshots_run_stacked(commit: str) -> None:
    """Monitors restored from real snapshots of older commits (older layouts, a float32
    ring, the warm-up's full G) run stacked as they run one by one."""
    import json
    from pathlib import Path

    from tests.detectors.test_granger import chain

    fixture = json.loads(
        (Path(__file__).parent / "data" / f"granger_snapshot_{commit}.json").read_text()
    )
    y = chain(11, 3400) + np.array([0.0, 1e5, 0.0])
    rng = np.random.default_rng(12)
    y[2800:, 1] = rng.normal(1e5 + 120.0, y[:2800, 1].std(), 600)
    for suffix, start in (("", 2000), ("_warmup", 1000)):
        apart = [GrangerMonitor.restore(fixture["snapshot" + suffix]) for _ in range(4)]
        together = [GrangerMonitor.restore(fixture["snapshot" + suffix]) for _ in range(4)]
        # each device a little different, so a mix-up between them would show
        streams = [y[start:] + 0.01 * k for k in range(4)]
        want = [
            [(i, f) for i, row in enumerate(s) for f in m.update(row)]
            for m, s in zip(apart, streams, strict=True)
        ]
        got: list[list[tuple[int, CausalityFinding]]] = [[] for _ in streams]
        for lo in range(0, len(streams[0]), 7):
            for n, found in enumerate(update_stacked(together, [s[lo : lo + 7] for s in streams])):
                got[n].extend((lo + i, f) for i, f in found)
        assert any(f.kind == "decoupling" for _, f in want[0])
        for n in range(4):
            assert [(i, f.kind, f.effect, f.ts_index) for i, f in got[n]] == [
                (i, f.kind, f.effect, f.ts_index) for i, f in want[n]
            ]
            _assert_same_state(_state(together[n]), _state(apart[n]))
