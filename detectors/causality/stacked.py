"""Many devices' Granger checks run as one: the per-sample work stacked across devices.

A :class:`~detectors.causality.checks.GrangerMonitor` does, per sample, a little work
on arrays of a few dozen numbers: it moves its windows on (the int16 sliding window;
in the warm-up also the growing window's cross-products), and past the warm-up it
runs a residual check (one small matrix product) and one CUSUM step per edge under
the sequential test (about thirty element-wise operations). On one device that is
numpy's per-call overhead, about a microsecond per operation, paid per device and
sample. Here the monitors of a batch's devices that share their shape (sensors, lag,
window, test levels) and phase lay those arrays end to end, so each sample of the
batch costs one call per operation for all of them: the "structure of arrays" layout
of :mod:`detectors.stacking`, applied to the Granger checks. In the warm-up the
windows whose spread of log F is due at a sample are tested together too (one
batched factorisation of every pair's normal equations).

What stays per device: storing each sample's row in its own ring, the structural
test points every ``screen_every`` samples (a few tests of pairs, on statistics
built from the window), the baseline at the end of the warm-up, and any finding
(rare). During the batch each monitor's per-sample statistics are views into the
stacked arrays, so its own code (test points, findings) reads and writes the stacked
state; at the end each monitor gets its own compact copy back.

Devices bring different numbers of rows. They are ordered by rows, most first, so the
devices that still have a row at step ``r`` are a prefix of the stack and so are their
edges: every step works on slices, never on gathered copies.

The result equals each monitor's own :meth:`~GrangerMonitor.update` on its rows, to
round-off of the sums (the stacked products may add in another order);
``tests/detectors/test_granger_stacked.py`` finds the same findings and byte-identical
snapshots on simulated pumps with faults.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> def device():
...     y = np.zeros((1200, 2))
...     for t in range(1, 1200):
...         y[t, 0] = 0.8 * y[t - 1, 0] + rng.normal()
...         y[t, 1] = 0.9 * y[t - 1, 0] + 0.3 * rng.normal()
...     return y
>>> streams = [device() for _ in range(5)]
>>> apart = [GrangerMonitor(["a", "b"], lag=2, window=100, warmup=600) for _ in streams]
>>> together = [GrangerMonitor(["a", "b"], lag=2, window=100, warmup=600) for _ in streams]
>>> for mon, y in zip(apart + together, streams + streams):
...     _ = [mon.update(row) for row in y[:600]]
>>> one_by_one = [[(i, f) for i, row in enumerate(y[600:]) for f in mon.update(row)]
...               for mon, y in zip(apart, streams)]
>>> update_stacked(together, [y[600:] for y in streams]) == one_by_one
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors._arrays import stack_alike
from detectors.causality.checks import (
    CausalityFinding,
    PairTests,
    _sequential_step,
    _welford_log_f,
)
from detectors.causality.checks import GrangerMonitor as GrangerMonitor
from detectors.causality.granger import all_pairs, pairs_from_grams, pairwise_from_grams
from detectors.causality.var import GrowingStack, WindowStack

#: Fewer monitors alike than this run one by one (the stack has a fixed cost per batch).
MIN_MONITORS = 4

Found = list[tuple[int, CausalityFinding]]
#: A monitor's rows to learn (all finite) and their indexes in its matrix.
_Rows = tuple[Sequence[int], np.ndarray]


def update_stacked(
    monitors: Sequence[GrangerMonitor], matrices: Sequence[np.ndarray]
) -> list[Found]:
    """Each monitor's findings on its own rows, ``(row index, finding)``, computed stacked.

    ``matrices[i]`` has shape ``(n_i, d_i)``, the rows of ``monitors[i]`` in order; rows
    with a non-finite value are skipped, as :meth:`GrangerMonitor.update` skips them.
    Monitors with pairwise tests run stacked with those of the same shape and phase
    (a monitor in its warm-up until its baseline, the rest of its rows on its own);
    the others (conditional tests, fewer than :data:`MIN_MONITORS` alike) run one by
    one. Each monitor is left in the state its own updates would leave.
    """
    if len(monitors) != len(matrices):
        raise ValueError("one matrix per monitor")
    found: list[Found] = [[] for _ in monitors]
    as_float = [np.asarray(m, dtype=np.float64) for m in matrices]
    for mon, matrix in zip(monitors, as_float, strict=True):
        if matrix.ndim != 2 or matrix.shape[1] != mon.d:
            raise ValueError(f"expected rows of {mon.d} values, got shape {matrix.shape}")
    # the rows to learn (all finite) and their indexes; one check when all are
    everywhere = bool(as_float) and bool(np.isfinite(np.concatenate(as_float, axis=None)).all())
    rows: list[_Rows] = []
    groups: dict[tuple[object, ...], list[int]] = {}
    for n, (mon, matrix) in enumerate(zip(monitors, as_float, strict=True)):
        if everywhere:
            rows.append((range(len(matrix)), matrix))
        else:
            keep = np.flatnonzero(np.isfinite(matrix).all(axis=1))
            rows.append((keep.tolist(), matrix[keep]))
        if not mon.conditional and len(rows[-1][0]):
            groups.setdefault((mon.warmed_up, *_shape(mon)), []).append(n)
    done = [0] * len(monitors)  # rows of each monitor already run stacked
    for (monitoring, *_), members in groups.items():
        if len(members) < MIN_MONITORS:
            continue
        # A warm-up stack takes each monitor to the end of its warm-up; the rest of
        # its rows run on their own below (once per device's lifetime).
        limit = [
            len(rows[n][0]) if monitoring else min(len(rows[n][0]), _left(monitors[n]))
            for n in members
        ]
        _Stack([monitors[n] for n in members], bool(monitoring)).run(
            [(rows[n][0][:m], rows[n][1][:m]) for n, m in zip(members, limit, strict=True)],
            [found[n] for n in members],
        )
        for n, m in zip(members, limit, strict=True):
            done[n] = m
    for n, mon in enumerate(monitors):
        index, matrix = rows[n]
        for i, row in zip(index[done[n] :], matrix[done[n] :], strict=True):
            found[n].extend((i, f) for f in mon.update(row))
    return found


def _left(mon: GrangerMonitor) -> int:
    """Samples until the monitor's baseline is built (at least one)."""
    return max(1, mon.warmup - mon.n_samples)


def _shape(mon: GrangerMonitor) -> tuple[object, ...]:
    """What the stacked per-sample checks need to be equal across monitors."""
    return (mon.d, mon.lag, mon.window, mon.arl0, mon.z_normal, mon.alpha_residual)


@dataclass
class _Edges:
    """The edges under the sequential test of every stacked monitor, end to end."""

    device: np.ndarray  # (E,) which monitor of the stack
    nodes: np.ndarray  # (E, 2) effect, cause
    flat: np.ndarray  # (E,) position of (device, cause, effect) in the stacked armed flags
    bu: np.ndarray  # (E, 2p) unrestricted slopes, float32
    cu: np.ndarray  # (E,) unrestricted intercepts
    br: np.ndarray  # (E, p) the effect's restricted slopes
    cr: np.ndarray  # (E,) restricted intercepts
    s2u: np.ndarray  # (E,) baseline unrestricted variance
    s2r: np.ndarray  # (E,) baseline restricted variance
    end: np.ndarray  # (N + 1,) edges of the first k monitors: end[k]


class _Stack:
    """Monitors of one shape and phase, ordered by rows (most first), their per-sample
    state stacked; ``monitoring``: past their warm-up (else all in it)."""

    def __init__(self, monitors: list[GrangerMonitor], monitoring: bool) -> None:
        self.monitors = monitors
        self.monitoring = monitoring
        first = monitors[0]
        self.d, self.p, self.window = first.d, first.lag, first.window
        self.z_normal, self.alpha_residual = first.z_normal, first.alpha_residual
        self.h = None if first.arl0 is None else float(np.log(first.arl0))
        self.short: WindowStack | None = None
        self.long: GrowingStack | None = None

    def run(self, rows: list[_Rows], found: list[Found]) -> None:
        order = sorted(range(len(self.monitors)), key=lambda k: -len(rows[k][0]))
        self.monitors = [self.monitors[k] for k in order]
        rows = [rows[k] for k in order]
        found = [found[k] for k in order]
        try:
            self._gather()
            live = np.array([len(keep) for keep, _ in rows])
            Y = np.zeros((int(live[0]), len(rows), self.d))
            for k, (_, matrix) in enumerate(rows):
                Y[: len(matrix), k] = matrix
            for r in range(len(Y)):
                n = int(np.count_nonzero(live > r))
                self._step(Y[r, :n], [(int(rows[k][0][r]), found[k]) for k in range(n)])
        finally:
            self._scatter()

    # -- the stack, built per batch --------------------------------------------------------
    def _gather(self) -> None:
        ms = self.monitors
        self.short = WindowStack([m._short for m in ms])
        if not self.monitoring:
            growing = [m._long for m in ms if m._long is not None]
            assert len(growing) == len(ms), "a warm-up stack holds monitors in their warm-up"
            self.long = GrowingStack(growing)
            return
        base = [m._base for m in ms if m._base is not None]
        assert len(base) == len(ms), "a monitoring stack holds monitors past their warm-up"
        self.coef = stack_alike([b["coef"] for b in base]).astype(np.float64)  # (N, p d, d)
        self.coef_c = stack_alike([b["coef_c"] for b in base])
        self.res_loc = stack_alike([b["res_loc"] for b in base])
        self.res_scale = stack_alike([b["res_scale"] for b in base])
        self.centre = stack_alike([b["centre"] for b in base])
        # the per-sample statistics: each monitor's arrays become views into these
        self.armed = stack_alike([m._dec_armed for m in ms])
        self.res_armed = stack_alike([m._res_armed for m in ms])
        self.res_calm = stack_alike([m._res_calm for m in ms])
        self.zhist = stack_alike([m._zhist for m in ms])
        self.seq = np.concatenate([m._seq for m in ms], axis=1)
        self.edges = self._edges(base)
        for k, m in enumerate(ms):
            a, b = self.edges.end[k], self.edges.end[k + 1]
            m._dec_armed, m._res_armed = self.armed[k], self.res_armed[k]
            m._res_calm, m._zhist = self.res_calm[k], self.zhist[k]
            m._seq = self.seq[:, a:b]
        self.t = np.array([m._t for m in ms])

    def _edges(self, base: list[dict[str, np.ndarray]]) -> _Edges:
        d = self.d
        tested = [self.h is not None and "seq_bu" in b and b["seq_cause"].size > 0 for b in base]
        counts = np.array(
            [b["seq_cause"].size if on else 0 for b, on in zip(base, tested, strict=True)]
        )
        end = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        on = [b for b, t in zip(base, tested, strict=True) if t]
        if not on:
            z = np.zeros(0)
            return _Edges(
                np.zeros(0, np.int64), np.zeros((0, 2), np.int64), np.zeros(0, np.int64),
                np.zeros((0, 2 * self.p), np.float32), z, np.zeros((0, self.p)), z, z, z, end,
            )  # fmt: skip
        device = np.repeat(np.arange(len(base)), counts)
        effect = np.concatenate([b["seq_effect"] for b in on]).astype(np.int64)
        cause = np.concatenate([b["seq_cause"] for b in on]).astype(np.int64)
        # each edge's restricted model is its effect's (pairwise: one per sensor)
        model = np.repeat(np.arange(len(on)), counts[counts > 0]) * d + effect
        return _Edges(
            device=device,
            nodes=np.stack([effect, cause], axis=1),
            flat=(device * d + cause) * d + effect,
            bu=np.concatenate([b["seq_bu"] for b in on]),
            cu=np.concatenate([b["seq_cu"] for b in on]),
            br=np.concatenate([b["seq_br"] for b in on])[model],
            cr=np.concatenate([b["seq_cr"] for b in on])[model],
            s2u=np.concatenate([b["seq_s2u"] for b in on]),
            s2r=np.concatenate([b["seq_s2r"] for b in on])[model],
            end=end,
        )

    def _scatter(self) -> None:
        """Every monitor gets its own compact arrays back (views would keep the stack)."""
        if self.long is not None:
            self.long.close()
        if not self.monitoring:
            return
        for m in self.monitors:
            m._dec_armed, m._res_armed = m._dec_armed.copy(), m._res_armed.copy()
            m._res_calm, m._zhist, m._seq = m._res_calm.copy(), m._zhist.copy(), m._seq.copy()

    # -- one sample of the first n monitors ---------------------------------------------
    def _step(self, y: np.ndarray, out: list[tuple[int, Found]]) -> None:
        n = len(y)
        assert self.short is not None
        if self.monitoring:
            dev = self.short.deviations(n, self.centre[:n])
            have = self.short.lagged[:n].copy()  # a lag missing: no residual, no CUSUM
            dev[~have] = 0.0
            self._residual(y, dev, have, out)
            if self.h is not None and self.edges.end[n] > 0:
                self._sequential(y, dev, have, out)
            self.t[:n] += 1
        self.short.push(y)
        if self.long is not None:
            self.long.push(y)
        ms = self.monitors[:n]
        tested: dict[int, PairTests] = {}
        if not self.monitoring:
            self._spread([k for k, m in enumerate(ms) if m._spread_due(m._t + 1)])
        else:
            tested = self._structure_tests(
                [k for k, m in enumerate(ms) if m._structure_due(m._t + 1)]
            )
        for k, m in enumerate(ms):
            findings: list[CausalityFinding] = []
            # test points (with their tests done above, if so), the warm-up's end
            m._after_sample(findings, spread=False, tested=tested.get(k))
            m._short.release()
            if findings:
                out[k][1].extend((int(out[k][0]), f) for f in findings)

    def _spread(self, due: list[int]) -> None:
        """:meth:`GrangerMonitor._learn_spread` of monitors ``due``, at once: all pairs
        of every window tested with one batched factorisation."""
        ms = [self.monitors[k] for k in due]
        f = None
        G = self._full_windows(ms)
        if G is not None:
            c, e = all_pairs(self.d)
            try:
                f, _ = pairwise_from_grams(
                    G, self.d, self.p, float(self.window), c, e, ms[0].ridge, retry=False
                )
            except np.linalg.LinAlgError:
                f = None  # a block needs a larger ridge: each window on its own
        if f is None:
            for m in ms:
                m._learn_spread()
            return
        wf = stack_alike([m._wf for m in ms])
        _welford_log_f(wf, np.array([m._wf_n + 1 for m in ms]), f, c, e)
        for m, own in zip(ms, wf, strict=True):
            m._wf[...] = own
            m._wf_n += 1

    def _full_windows(self, ms: list[GrangerMonitor]) -> np.ndarray | None:
        """The stacked cross-products of ``ms``' short windows if they can be tested in
        one factorisation: two or more, one ridge, and every window full (a gap gives
        a window its own count of rows, and the half-window rule of its own test)."""
        if len(ms) < 2 or len({m.ridge for m in ms}) != 1:
            return None
        G = stack_alike([m._short._gram() for m in ms])
        return G if (G[:, 0, 0] == self.window).all() else None

    def _structure_tests(self, due: list[int]) -> dict[int, PairTests]:
        """The pairwise tests of the structural checks of monitors ``due`` (at a test
        point), at once: each monitor chooses its pairs as it would, and all of them,
        of every window, go through one batched factorisation, as :meth:`_spread` does.
        Per block the arithmetic is that of a monitor's own test, so the F statistics
        are the same. Empty (each tests its own window) for fewer than two, a
        conditional monitor or a window with gaps; with the pairs but no tests when a
        block needs a larger ridge (the monitors have chosen their pairs)."""
        ms = [self.monitors[k] for k in due]
        G = None if any(m.conditional for m in ms) else self._full_windows(ms)
        if G is None:
            return {}
        flats = [m._pairs_to_test(m._full_test_due(m._t + 1)) for m in ms]
        sizes = [len(f) for f in flats]
        flat = np.concatenate(flats)
        which = np.repeat(np.arange(len(ms)), sizes)
        d = self.d
        try:
            f, r2 = pairs_from_grams(
                G,
                which,
                flat // d,
                flat % d,
                d,
                self.p,
                float(self.window),
                ms[0].ridge,
                retry=False,
            )
        except np.linalg.LinAlgError:  # a block needs a larger ridge: each on its own
            return {k: PairTests(own, None, None) for k, own in zip(due, flats, strict=True)}
        cut = np.cumsum(sizes)[:-1]
        return {
            k: PairTests(own, fk, rk)
            for k, own, fk, rk in zip(due, flats, np.split(f, cut), np.split(r2, cut), strict=True)
        }

    def _residual(
        self, y: np.ndarray, dev: np.ndarray, have: np.ndarray, out: list[tuple[int, Found]]
    ) -> None:
        """:meth:`GrangerMonitor._check_residual` of every monitor at once."""
        n = len(y)
        pred = self.coef_c[:n] + np.matmul(dev[:, None, :], self.coef[:n])[:, 0, :]
        z = (y - pred - self.res_loc[:n]) / self.res_scale[:n]
        z = np.where(np.isfinite(z) & have[:, None], z, 0.0)
        az = np.abs(z)
        self.zhist[np.arange(n), self.t[:n] % (self.p + 1)] = az
        calm = az < self.z_normal
        calm_run = self.res_calm[:n]
        calm_run[:] = np.where(calm, np.minimum(calm_run + 1, self.window), 0)
        self.res_armed[:n] |= calm_run >= self.window
        if calm.all():
            return
        for k in np.flatnonzero(~calm.all(axis=1)):
            index, found = out[k]
            found.extend((int(index), f) for f in self.monitors[k]._residual_findings(z[k]))

    def _sequential(
        self, y: np.ndarray, dev: np.ndarray, have: np.ndarray, out: list[tuple[int, Found]]
    ) -> None:
        """:meth:`GrangerMonitor._check_sequential` of every monitor at once: the same
        step (:func:`~detectors.causality.checks._sequential_step`) on the edges of all."""
        n, p, d = len(y), self.p, self.d
        e = self.edges
        E = int(e.end[n])
        device, nodes = e.device[:E], e.nodes[:E]
        effect, cause = nodes[:, 0], nodes[:, 1]
        by_sensor = dev.reshape(n, p, d).transpose(0, 2, 1)  # [k, s, l]
        x_u = by_sensor[device[:, None], nodes].reshape(E, 2 * p)
        x_r = by_sensor[device, effect]
        pred_u = e.cu[:E] + np.einsum("ij,ij->i", e.bu[:E], x_u)
        pred_r = e.cr[:E] + np.einsum("ij,ij->i", e.br[:E], x_r)
        yj = (y - self.centre[:n])[device, effect]
        seq = self.seq[:, :E].astype(np.float64)
        armed = self.armed.reshape(-1)[e.flat[:E]]
        _sequential_step(seq, armed, yj, pred_u, pred_r, e.s2u[:E], e.s2r[:E], self.window)
        cusum = seq[0]
        assert self.h is not None
        if not have.all():  # monitors without their lags take no step
            skip = ~have[device]
            seq[:, skip] = self.seq[:, :E][:, skip]
            armed = armed & ~skip
            back = ~armed & ~skip & (cusum >= self.h)
        else:
            back = ~armed & (cusum >= self.h)
        if back.any():
            self.armed.reshape(-1)[e.flat[:E][back]] = True
            cusum[back] = 0.0
        crossed = armed & (cusum >= self.h)
        for k in np.flatnonzero(crossed) if crossed.any() else ():
            m = self.monitors[int(device[k])]
            finding = m._sequential_decoupling(int(cause[k]), int(effect[k]), cusum[k])
            index, found = out[int(device[k])]
            found.append((int(index), finding))
            cusum[k] = 0.0
        self.seq[:, :E] = seq
